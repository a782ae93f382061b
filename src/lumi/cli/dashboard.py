"""``lumi dashboard --app DIR``: open the dashboard of an app that is already running."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lumi.cli.constants import DASHBOARD_PORT as DEFAULT_PORT
from lumi.cli.output import stdout

if TYPE_CHECKING:
    from lumi.config import AppConfig


def register(app: typer.Typer) -> None:
    @app.command("dashboard")
    def dashboard_cmd(
        app_dir: Annotated[Path, typer.Option("--app", "-a", help="The app folder.")] = Path("."),
        env: Annotated[str | None, typer.Option("--env", "-e", help="A named environment.")] = None,
        port: Annotated[
            int, typer.Option(help="The dashboard's port (another if taken).", min=0, max=65535)
        ] = DEFAULT_PORT,
    ) -> None:
        """Serve the dashboard of an app started with `lumi run` (e.g. with --no-dashboard)."""
        import asyncio

        from lumi.config import load_config
        from lumi.runtimes.discovery import read_registry

        config = load_config(app_dir, env)
        read_registry(config.root)  # one clear line if the app is not running
        asyncio.run(_serve(config, port))


async def _serve(config: AppConfig, port: int) -> None:
    import asyncio
    import signal

    from lumi.dashboard import Dashboard

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    board = Dashboard(config, port=port)
    await board.start()
    stdout.print(f"dashboard of {config.name!r}: {board.url}", highlight=False, soft_wrap=True)
    stdout.print("Ctrl-C stops it", style="dim")
    try:
        await stop.wait()
    finally:
        await board.aclose()
