"""``lumi serve SERVICE``: run one replica of one service in this process (what containers,
pods and every local runtime but ``inproc`` run)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve_cmd(
        service: Annotated[str, typer.Argument(help="The service to serve.")],
        app_dir: Annotated[
            Path, typer.Option("--app", "-a", help="The app folder (holding lumi.toml).")
        ] = Path("."),
        env: Annotated[str | None, typer.Option("--env", "-e", help="A named environment.")] = None,
        host: Annotated[
            str | None, typer.Option(help="Listen address (default LUMI_HOST, defaults.host).")
        ] = None,
        port: Annotated[
            int | None, typer.Option(help="Port of the first transport (default LUMI_PORT).")
        ] = None,
    ) -> None:
        """Serve one replica of SERVICE until SIGTERM; capabilities' endpoints and the broker
        come from the config and LUMI_* variables (see docs/runtimes.md)."""
        from lumi.runtimes.serve import serve

        raise typer.Exit(serve(service, app_dir=app_dir, env=env, host=host, port=port))
