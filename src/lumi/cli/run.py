"""``lumi run``: start an app — each replica on its runtime (a local process by default), or
all in this one process with --inproc."""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lumi.cli.constants import DASHBOARD_PORT as DEFAULT_PORT

if TYPE_CHECKING:
    from lumi.config import AppConfig
    from lumi.runtimes.supervisor import Supervisor

_COLOURS = (36, 33, 32, 35, 34, 91, 92, 93, 94, 95, 96)


class Terminal:
    """Multiplexes every service's output with a coloured, aligned ``name |`` prefix."""

    def __init__(self, colour: bool) -> None:
        self.colour = colour
        self.width = 8
        self._colours: dict[str, int] = {}

    def fit(self, sources: Iterable[str]) -> None:
        """Make room for ``sources`` now, so the prefixes line up from the first line."""
        self.width = max(self.width, *(len(source) for source in sources))

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
        reload: Annotated[
            bool, typer.Option("--reload", help="Restart services whose code changes.")
        ] = False,
        dashboard: Annotated[
            bool, typer.Option("--dashboard/--no-dashboard", help="Serve the local dashboard.")
        ] = True,
        dashboard_port: Annotated[
            int, typer.Option(help="The dashboard's port (another if taken).", min=0, max=65535)
        ] = DEFAULT_PORT,
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
        """Run an app: every service replica on its runtime (a local process by default), in
        dependency order."""
        from lumi.runtimes import _launch

        if not inproc:  # its imports run while the config and the app load (~0.4 s)
            _launch.launch_early()
        try:
            code = _run(app_dir, env, inproc, reload, dashboard_port if dashboard else None, nodes)
        finally:
            _launch.discard_early()  # no service runs on the process runtime
        raise typer.Exit(code)


def _run(
    app_dir: Path, env: str | None, inproc: bool, reload: bool, board: int | None, nodes: int | None
) -> int:
    import asyncio

    from lumi.config import load_config
    from lumi.model.errors import ConfigError
    from lumi.runtimes import _launch
    from lumi.runtimes.supervisor import Supervisor

    config = load_config(app_dir, env)
    if reload and inproc:
        raise ConfigError("--reload restarts service processes; it does not work with --inproc")
    colour = sys.stdout.isatty() and "NO_COLOR" not in os.environ
    terminal = Terminal(colour)
    runtime = "inproc" if inproc else None
    supervisor = Supervisor(config, emit=terminal, runtime=runtime, nodes=nodes)
    terminal.fit(supervisor.replica_names())
    if all(supervisor.runtime_name(name) != "process" for name in supervisor.order):
        _launch.discard_early()
    if reload:  # watchfiles, aiohttp and the API differ: only for --reload
        from lumi.runtimes.reload import run_with_reload

        main = run_with_reload(supervisor, terminal)
    else:
        main = supervisor.run()
    return asyncio.run(with_dashboard(config, terminal, board, main, supervisor))


async def with_dashboard(
    config: AppConfig,
    terminal: Terminal,
    port: int | None,
    main: Awaitable[int],
    supervisor: Supervisor | None = None,
) -> int:
    """Run ``main`` with the dashboard served beside it (``port`` None: no dashboard). Its URL
    is printed once the supervisor is running (right away without one), below the banner."""
    import asyncio

    if port is None:
        return await main
    task = asyncio.ensure_future(main)
    if supervisor is not None:
        # Replicas first: the dashboard (aiohttp, ~0.1 s of imports) is not what "running"
        # waits for; it starts once the app runs, and its URL is printed below the banner.
        running = asyncio.ensure_future(supervisor.running.wait())
        await asyncio.wait({task, running}, return_when=asyncio.FIRST_COMPLETED)
        running.cancel()
        if task.done():
            return task.result()
    from lumi.dashboard import Dashboard

    board = Dashboard(config, port=port)
    try:
        await board.start()
    except BaseException:
        if supervisor is not None:
            supervisor.request_stop()
        await asyncio.gather(task, return_exceptions=True)
        raise
    terminal("lumi", f"dashboard: {board.url}")
    try:
        return await task
    finally:
        await board.aclose()
