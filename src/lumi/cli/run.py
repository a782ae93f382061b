"""``lumi run``: start an app — each replica on its runtime (a local process by default), or
all in this one process with --inproc."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from lumi.config import load_config
from lumi.runtimes.supervisor import Supervisor

_COLOURS = (36, 33, 32, 35, 34, 91, 92, 93, 94, 95, 96)


class Terminal:
    """Multiplexes every service's output with a coloured, aligned ``name |`` prefix."""

    def __init__(self, colour: bool) -> None:
        self.colour = colour
        self.width = 8
        self._colours: dict[str, int] = {}

    def __call__(self, source: str, line: str) -> None:
        service = source.split("[", 1)[0]
        if service not in self._colours:
            self._colours[service] = (
                1 if service == "lumi" else _COLOURS[len(self._colours) % len(_COLOURS)]
            )
        self.width = max(self.width, len(source))
        prefix = f"{source:<{self.width}} |"
        if self.colour:
            prefix = f"\x1b[{self._colours[service]}m{prefix}\x1b[0m"
        sys.stdout.write(f"{prefix} {line}\n")
        sys.stdout.flush()


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_cmd(
        app_dir: Annotated[Path, typer.Argument(help="The app folder (holding lumi.toml).")] = Path(
            "."
        ),
        env: Annotated[str | None, typer.Option("--env", "-e", help="A named environment.")] = None,
        inproc: Annotated[
            bool, typer.Option("--inproc", help="Run every service in this one process.")
        ] = False,
        nodes: Annotated[
            int | None,
            typer.Option(
                "--nodes",
                min=1,
                max=64,
                help="Simulate N nodes: one replica of each per-node service on every node.",
            ),
        ] = None,
    ) -> None:
        """Run an app: every service replica as a local process, in dependency order."""
        config = load_config(app_dir, env)
        colour = sys.stdout.isatty() and "NO_COLOR" not in os.environ
        supervisor = Supervisor(
            config, emit=Terminal(colour), runtime="inproc" if inproc else None, nodes=nodes
        )
        raise typer.Exit(asyncio.run(supervisor.run()))
