"""The registry of a running app: ``<app>/.lumi/registry.json``, written by ``lumi run``.

It is how the CLI (``lumi call``, ``lumi ls``) and other tools find the endpoints of a running
app's services. It is written atomically (write, then rename) and names the supervisor's pid, so
a registry left behind by a killed supervisor is recognised as stale.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pydantic

from lumi.model.errors import AppError


class ReplicaState(pydantic.BaseModel):
    index: int
    endpoint: str  # the first transport's
    endpoints: list[str] = []  # one per transport, scheme-qualified (grpc://host:port)
    pid: int | None = None
    state: str = "starting"  # starting | ready | restarting | stopping | stopped
    restarts: int = 0


class ServiceState(pydantic.BaseModel):
    endpoints: list[str]
    fingerprint: str
    replicas: list[ReplicaState] = []


class Registry(pydantic.BaseModel):
    app: str
    env: str | None = None
    supervisor_pid: int
    mode: str = "process"  # process | inproc
    services: dict[str, ServiceState] = {}


def registry_path(app_dir: Path) -> Path:
    return app_dir / ".lumi" / "registry.json"


def write_registry(app_dir: Path, registry: Registry) -> None:
    path = registry_path(app_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".registry-", suffix=".json")
    with os.fdopen(fd, "w") as file:
        file.write(registry.model_dump_json(indent=2))
    os.replace(tmp, path)


def remove_registry(app_dir: Path, supervisor_pid: int) -> None:
    path = registry_path(app_dir)
    try:
        if json.loads(path.read_text()).get("supervisor_pid") == supervisor_pid:
            path.unlink()
    except (OSError, ValueError):
        pass


def read_registry(app_dir: Path) -> Registry:
    """The registry of the app running from ``app_dir``; AppError if it is not running."""
    path = registry_path(app_dir)
    hint = f"start it with: lumi run {app_dir}"
    try:
        data: Any = json.loads(path.read_text())
        registry = Registry.model_validate(data)
    except FileNotFoundError:
        raise AppError(f"the app in {app_dir} is not running ({hint})") from None
    except (OSError, ValueError) as exc:
        raise AppError(f"cannot read {path}: {exc}") from None
    if not _alive(registry.supervisor_pid):
        raise AppError(f"the app in {app_dir} is not running (stale {path}; {hint})")
    return registry


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
