"""``lumi build [SERVICE...]``: one OCI artifact per service; ``lumi build SUBCOMMAND`` for
other things a build makes (``lock`` now; ``image`` and ``lambda`` later).

The group's first argument is a service name or a subcommand: a word that names a subcommand
runs it, anything else (or nothing) is the default command, ``lumi build artifacts``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from lumi.cli.output import stderr, stdout

DEFAULT = "artifacts"

AppDir = Annotated[Path, typer.Option("--app", "-a", help="The app folder (holding lumi.toml).")]
Env = Annotated[str | None, typer.Option("--env", "-e", help="A named environment of the config.")]


class ServiceOrCommand(TyperGroup):
    """A group whose first word is a subcommand, or else arguments of the default command."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # typer's vendored click
        if not args or (args[0] not in self.commands and args[0] not in ("-h", "--help")):
            args = [DEFAULT, *args]
        return super().parse_args(ctx, args)


def register(app: typer.Typer) -> None:
    build = typer.Typer(
        cls=ServiceOrCommand,
        help="Build service artifacts: lumi build [SERVICE...] (see lumi build artifacts -h).",
    )
    app.add_typer(build, name="build")

    @build.command(DEFAULT)
    def artifacts_cmd(
        services: Annotated[
            list[str] | None, typer.Argument(help="Services to build (default: all).")
        ] = None,
        app_dir: AppDir = Path("."),
        env: Env = None,
        out: Annotated[
            Path | None, typer.Option("--out", "-o", help="Build layout (default .lumi/build).")
        ] = None,
        isolated: Annotated[
            bool, typer.Option(help="Build the wheel in a fresh venv (fetches the backend).")
        ] = False,
    ) -> None:
        """Build one OCI artifact per service: wheel, lock, clients and manifest."""
        import asyncio

        from rich.markup import escape

        from lumi.packaging.build import build_app

        def step(message: str) -> None:
            if stderr.is_terminal:
                stderr.print(f"[dim]… {escape(message)}[/]")

        result = asyncio.run(
            build_app(app_dir, services, env=env, out=out, isolated=isolated, step=step)
        )
        if result.lock_written:
            stdout.print(f"wrote {result.lock} (commit it: the lock is an input of the build)")
        for artifact in result.artifacts:
            stdout.print(
                f"[bold cyan]{artifact.manifest.service}[/] {artifact.manifest.version}  "
                f"{artifact.digest}  [dim]{_size(artifact.size)}[/]",
                highlight=False,
            )
        stdout.print(
            f"built {len(result.artifacts)} artifact(s) into {result.out} in {result.seconds:.1f}s",
            highlight=False,
        )

    @build.command("lock")
    def lock_cmd(app_dir: AppDir = Path("."), env: Env = None) -> None:
        """Write requirements.lock afresh from the versions installed here."""
        from lumi.config import load_config
        from lumi.packaging.build import write_lock

        config = load_config(app_dir, env)
        path, count = write_lock(config.root)
        stdout.print(f"wrote {path} ({count} pinned packages)", highlight=False)


def _size(count: Any) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value} B"
