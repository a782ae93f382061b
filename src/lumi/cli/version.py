"""``lumi version [SERVICE] [major|minor|patch]``: show or bump a service's version.

The version lives in the service class (``version = "1.4.0"``); a bump rewrites that literal
after checking the new version against the last published one (see
:mod:`lumi.packaging.versioning`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lumi.cli.output import print_json, stdout

if TYPE_CHECKING:
    from lumi.packaging.introspect import ServiceEntry
    from lumi.packaging.repository import Repository

AppDir = Annotated[Path, typer.Option("--app", "-a", help="The app folder (holding lumi.toml).")]
Repo = Annotated[
    str | None, typer.Option("--repo", "-r", help="Repository URL (default: from config).")
]


def register(app: typer.Typer) -> None:
    @app.command("version")
    def version_cmd(
        service: Annotated[str | None, typer.Argument(help="A service (default: all).")] = None,
        part: Annotated[
            str | None, typer.Argument(help="Bump this part: major, minor or patch.")
        ] = None,
        app_dir: AppDir = Path("."),
        repo: Repo = None,
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    ) -> None:
        """Show each service's version and its latest release, or bump one service's version."""
        from lumi.model.semver import BUMPS, VersionError, bump

        if service in BUMPS and part is None:
            raise VersionError(f"name the service to bump: lumi version SERVICE {service}")
        if part is not None and part not in BUMPS:
            raise VersionError(f"cannot bump {part!r}; say one of: {', '.join(BUMPS)}")
        import asyncio

        from lumi.config import load_config
        from lumi.packaging.build import select_services
        from lumi.packaging.introspect import app_services
        from lumi.packaging.settings import repository_for
        from lumi.packaging.versioning import bump_source, check_release, refusal

        config = load_config(app_dir)
        entries = app_services(config.root)
        names = select_services(entries, [service] if service else [])
        repository = repository_for(config, url=repo)
        if part is None:
            asyncio.run(_show(repository, entries, names, as_json))
            return
        assert service is not None
        entry = entries[service]
        new = bump(entry.interface.version, part)
        iface = entry.interface.model_copy(update={"version": new})

        async def check() -> None:
            async with repository:
                if new in await repository.versions(service):
                    raise VersionError(f"{service}@{new} is already published; bump further")
                result = await check_release(repository, iface, config.root)
                if result.errors:
                    raise refusal(result)

        asyncio.run(check())
        file = bump_source(entry, new)
        stdout.print(f"{service} {entry.interface.version} → {new} (in {file})", highlight=False)


async def _show(
    repository: Repository, entries: dict[str, ServiceEntry], names: list[str], as_json: bool
) -> None:
    rows = []
    async with repository:
        for name in names:
            iface = entries[name].interface
            published = await repository.versions(name)
            latest = published[-1] if published else None
            if latest == iface.version:
                live = await repository.manifest(name, latest)
                same = live.manifest.fingerprint == iface.fingerprint
                state = "published" if same else "changed since publishing: bump it"
            elif latest is None:
                state = "never published"
            else:
                state = f"not published (latest release {latest})"
            rows.append({"service": name, "version": iface.version, "latest": latest,
                         "state": state})  # fmt: skip
    if as_json:
        print_json(rows)
        return
    for row in rows:
        stdout.print(
            f"[bold cyan]{row['service']}[/] {row['version']}  [dim]{row['state']}[/]",
            highlight=False,
        )
