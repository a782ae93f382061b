"""Where an app keeps its local state: ``<app>/.lumi/`` — the one place that knows the layout.

    .lumi/registry.json      the running app's endpoints and replica states (``lumi run``)
    .lumi/interfaces/*.json  the interfaces of the running app's services
    .lumi/events.db          the embedded event log
    .lumi/traces.db          the span store behind ``lumi trace``
    .lumi/logs/<service>.log structured logs, one JSON object per line
    .lumi/routes.json        traffic weights per endpoint, followed by every replica (lumi deploy)
    .lumi/env/<name>/        a deployed environment's control plane (lumi up, lumi deploy)

Everything under it may hold request data, so the folder is made private (0700) and files in
it are created private (0600).
"""

from __future__ import annotations

import os
from pathlib import Path

STATE_DIR = ".lumi"


class AppPaths:
    """The state paths of the app whose folder is ``root``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.state = self.root / STATE_DIR

    @property
    def registry(self) -> Path:
        return self.state / "registry.json"

    @property
    def interfaces(self) -> Path:
        return self.state / "interfaces"

    @property
    def events(self) -> Path:
        return self.state / "events.db"

    @property
    def traces(self) -> Path:
        return self.state / "traces.db"

    @property
    def routes(self) -> Path:
        return self.state / "routes.json"

    def environment(self, name: str) -> Path:
        """The state folder of the deployed environment ``name``."""
        return self.state / "env" / name

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    def log_file(self, service: str, replica: int = 0) -> Path:
        """``logs/<service>.log`` (``<service>-<n>.log`` for replica n > 0)."""
        name = service if replica == 0 else f"{service}-{replica}"
        return self.logs / f"{name}.log"


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if needed, readable by this user only; returns it."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path
