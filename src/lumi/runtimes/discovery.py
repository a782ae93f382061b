"""The registry of a running app: ``<app>/.lumi/registry.json``, written by ``lumi run``.

It is how the CLI (``lumi call``, ``lumi ls``) and other tools find the endpoints of a running
app's services. It is written atomically (write, then rename) and names the supervisor's pid, so
a registry left behind by a killed supervisor is recognised as stale.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pydantic

from lumi.config import AppConfig
from lumi.model.errors import AppError
from lumi.model.interface import ServiceInterface
from lumi.paths import AppPaths, private_dir
from lumi.security.policy import Policy


class ReplicaState(pydantic.BaseModel):
    index: int
    endpoints: list[str]  # one per transport it serves
    runtime: str = "process"
    node: str | None = None  # with lumi run --nodes
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
    mode: str = "process"  # the runtime every service was forced to, or "process"
    mtls: bool = False  # endpoints speak mTLS: call them as the operator (.lumi/ca/certs)
    services: dict[str, ServiceState] = {}


def registry_path(app_dir: Path) -> Path:
    return AppPaths(app_dir).registry


def write_interfaces(app_dir: Path, interfaces: Mapping[str, ServiceInterface]) -> None:
    """Save the interfaces of the app being started (what ``lumi call`` reads)."""
    folder = private_dir(AppPaths(app_dir).interfaces)
    for name, iface in interfaces.items():
        _write_atomic(folder / f"{name}.json", iface.to_json())


def write_listing(config: AppConfig, interfaces: Mapping[str, ServiceInterface]) -> None:
    """Save what ``lumi ls`` prints of the running app beyond the registry and the interfaces
    (the services in the config's order, who may call what), and which config file, as of
    when, it comes from: ``lumi ls`` reads it instead of importing the app
    (``lumi.cli._quick_ls``) while that file is unchanged."""
    file = config.path.resolve()
    # (not policies(), which checks the config: a reloaded interface must not stop this)
    operator = config.security.operator
    access = {
        name: Policy(config.name, iface, config.service(name).access, operator=operator).listing()
        for name, iface in interfaces.items()
    }
    listing = {
        "supervisor_pid": os.getpid(),  # a listing left by an earlier run is not this one's
        "config": str(file),
        "config_mtime_ns": file.stat().st_mtime_ns,
        "env": config.environment,
        "mtls": config.security.mtls,
        "services": list(interfaces),
        "access": access,
    }
    path = AppPaths(config.root).listing
    private_dir(path.parent)
    _write_atomic(path, json.dumps(listing, indent=2))


def read_interface(app_dir: Path, service: str) -> ServiceInterface:
    """The interface of a service of the running app."""
    path = AppPaths(app_dir).interfaces / f"{service}.json"
    try:
        return ServiceInterface.from_json(path.read_text())
    except (OSError, ValueError) as exc:
        raise AppError(f"cannot read the interface of {service} ({path}): {exc}") from None


def write_registry(app_dir: Path, registry: Registry) -> None:
    path = registry_path(app_dir)
    private_dir(path.parent)
    _write_atomic(path, registry.model_dump_json(indent=2))


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".json")
    with os.fdopen(fd, "w") as file:  # mkstemp creates it 0600
        file.write(text)
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
