"""``lumi resolve`` and ``lumi install``: other teams' interfaces, by version range."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lumi.cli.output import print_json, stdout

if TYPE_CHECKING:
    from lumi.packaging.install import Lock

AppDir = Annotated[Path, typer.Option("--app", "-a", help="The app folder (holding lumi.toml).")]
Repo = Annotated[
    str | None, typer.Option("--repo", "-r", help="Repository URL (default: from config).")
]
Upgrade = Annotated[
    bool, typer.Option("--upgrade", "-U", help="Prefer the newest versions over the lock's.")
]


def register(app: typer.Typer) -> None:
    @app.command("resolve")
    def resolve_cmd(
        app_dir: AppDir = Path("."),
        repo: Repo = None,
        upgrade: Upgrade = False,
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    ) -> None:
        """Choose a published version of every required interface and write lumi-requires.lock."""
        import asyncio

        from lumi.config import load_config
        from lumi.packaging.install import LOCK_FILE, resolve_app
        from lumi.packaging.settings import repository_for

        config = load_config(app_dir)
        repository = repository_for(config, url=repo)

        async def run() -> tuple[Lock, bool]:
            async with repository:
                return await resolve_app(repository, config, upgrade=upgrade)

        lock, changed = asyncio.run(run())
        if as_json:
            print_json({n: {"version": r.version, "digest": r.digest}
                        for n, r in sorted(lock.resolved.items())})  # fmt: skip
            return
        for name, resolved in sorted(lock.resolved.items()):
            stdout.print(f"[bold cyan]{name}[/] {resolved.version}  [dim]{resolved.digest}[/]",
                         highlight=False)  # fmt: skip
        state = "wrote" if changed else "unchanged:"
        stdout.print(f"{state} {config.root / LOCK_FILE} ({len(lock.resolved)} service(s))",
                     highlight=False)  # fmt: skip

    @app.command("install")
    def install_cmd(
        app_dir: AppDir = Path("."),
        repo: Repo = None,
        upgrade: Upgrade = False,
        frozen: Annotated[
            bool, typer.Option("--frozen", help="Install exactly the lock; never resolve.")
        ] = False,
    ) -> None:
        """Install the Python client of every resolved interface into .lumi/site-packages."""
        import asyncio

        from lumi.config import load_config
        from lumi.packaging.errors import ResolutionError
        from lumi.packaging.install import LOCK_FILE, SITE, Lock, install, resolve_app
        from lumi.packaging.settings import repository_for

        config = load_config(app_dir)
        repository = repository_for(config, url=repo)

        async def run() -> Lock:
            async with repository:
                if frozen:
                    lock = Lock.read(config.root / LOCK_FILE)
                    if lock is None:
                        raise ResolutionError(f"no {LOCK_FILE}; run lumi resolve first")
                else:
                    lock, _ = await resolve_app(repository, config, upgrade=upgrade)
                await install(repository, config, lock)
                return lock

        lock = asyncio.run(run())
        for name, resolved in sorted(lock.resolved.items()):
            stdout.print(f"[bold cyan]{name}[/] {resolved.version}  → import "
                         f"{_module(name)}", highlight=False)  # fmt: skip
        stdout.print(f"installed {len(lock.resolved)} client(s) into {config.root / SITE}",
                     highlight=False)  # fmt: skip


def _module(name: str) -> str:
    from lumi.codegen.schema import snake

    return f"{snake(name)}_client"
