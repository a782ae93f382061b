"""Where an app keeps its local state: ``<app>/.lumi/`` — the one place that knows the layout.

    .lumi/registry.json      the running app's endpoints and replica states (``lumi run``)
    .lumi/interfaces/*.json  the interfaces of the running app's services
    .lumi/listing.json       the rest of what ``lumi ls`` prints of it (service order, access)
    .lumi/events.db          the embedded event log
    .lumi/traces.db          the span store behind ``lumi trace``
    .lumi/logs/<service>.log structured logs, one JSON object per line
    .lumi/ca/ca.crt, ca.key  the app's certificate authority (``lumi run``, mTLS)
    .lumi/ca/certs/<name>/   one identity's tls.crt, tls.key, ca.crt (a replica, the operator)
    .lumi/masked/            an empty folder the container runtime mounts over ca/
    .lumi/routes.json        traffic weights per endpoint, followed by every replica (lumi deploy)
    .lumi/env/<name>/        a deployed environment's control plane (lumi up, lumi deploy)

Everything under it may hold request data, so the folder is made private (0700) and files in
it are created private (0600). ``LUMI_STATE_DIR`` moves it (a Lambda function's app folder is
read-only; its state goes to ``/tmp``).
"""

from __future__ import annotations

import os
from pathlib import Path

STATE_DIR = ".lumi"
STATE_DIR_VARIABLE = "LUMI_STATE_DIR"


class AppPaths:
    """The state paths of the app whose folder is ``root``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        moved = os.environ.get(STATE_DIR_VARIABLE)
        self.state = Path(moved) if moved else self.root / STATE_DIR

    @property
    def registry(self) -> Path:
        return self.state / "registry.json"

    @property
    def interfaces(self) -> Path:
        return self.state / "interfaces"

    @property
    def listing(self) -> Path:
        return self.state / "listing.json"

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

    @property
    def ca(self) -> Path:
        return self.state / "ca"

    def certs(self, name: str) -> Path:
        """``ca/certs/<name>``: the TLS bundle of one identity (``operator``, ``Orders.0``)."""
        return self.ca / "certs" / name

    @property
    def operator_certs(self) -> Path:
        return self.certs("operator")

    def log_file(self, service: str, replica: int = 0) -> Path:
        """``logs/<service>.log`` (``<service>-<n>.log`` for replica n > 0)."""
        name = service if replica == 0 else f"{service}-{replica}"
        return self.logs / f"{name}.log"


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) readable by this user only (0700); returns it.

    An existing ``.lumi`` folder on the way (from an older Lumi) is made private too.
    """
    missing = []
    node = path
    while not node.exists():
        missing.append(node)
        if node.parent == node:
            break
        node = node.parent
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)
        os.chmod(folder, 0o700)  # mkdir's mode is masked by the umask
    os.chmod(path, 0o700)
    for folder in (path, *path.parents):
        if folder.name == STATE_DIR:
            os.chmod(folder, 0o700)
            break
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` if needed (and its folder, private) as a file only this user may read
    or write (0600), before anything opens it with the umask's mode; returns it."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return path
