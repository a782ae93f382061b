"""The common ``lumi ls``: a running app listed from what its supervisor wrote — the registry,
the interfaces and the listing (``.lumi/listing.json``: the config's service order, who may
call what) — as JSON, with the standard library only.

The full path loads the config and imports the app's code to build its interfaces (pydantic
and the app's own imports: most of what ``lumi ls`` cost, ``bench/cli_bench.py``). Whenever this
path is not sure it lists what the full path would — the app not running, another ``--env``,
the config file changed since the app started, a file missing or unreadable — it returns
``None`` and the full path takes over (with its errors)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lumi.paths import AppPaths


class Running:
    """What ``lumi ls`` prints of a running app: ``interfaces`` (interface JSON, in the config's
    order), ``access`` (per service: ``summary`` and each method's callers), ``replicas`` (per
    service, the registry's entries) and whether the config asks for ``mtls``."""

    def __init__(
        self,
        mtls: bool,
        interfaces: list[dict[str, Any]],
        access: dict[str, dict[str, Any]],
        replicas: dict[str, list[dict[str, Any]]],
    ) -> None:
        self.mtls, self.interfaces, self.access, self.replicas = mtls, interfaces, access, replicas


def read(app_dir: Path, env: str | None) -> Running | None:
    """The running app of ``app_dir`` (a folder or its config file), if it runs ``env`` from the
    config file as it is now; otherwise ``None``."""
    root = app_dir.parent if app_dir.is_file() else app_dir
    paths = AppPaths(root)
    try:
        registry = json.loads(paths.registry.read_text())
        listing = json.loads(paths.listing.read_text())
        pid = registry["supervisor_pid"]
        if listing["supervisor_pid"] != pid or listing["env"] != env:
            return None
        if os.stat(listing["config"]).st_mtime_ns != listing["config_mtime_ns"]:
            return None
        if _config_file(app_dir) != listing["config"]:
            return None
        os.kill(pid, 0)
        names, access = listing["services"], listing["access"]
        interfaces = [json.loads((paths.interfaces / f"{n}.json").read_text()) for n in names]
        services = registry["services"]
        replicas = {name: services[name]["replicas"] for name in names if name in services}
        if not all(isinstance(access[name], dict) for name in names):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    mtls = listing.get("mtls")
    return Running(mtls, interfaces, access, replicas) if isinstance(mtls, bool) else None


def _config_file(app_dir: Path) -> str | None:
    """The config file the full path would load for ``app_dir`` (``lumi.config.find_config``),
    or ``None`` when it is not simply ``lumi.toml`` (the full path decides then)."""
    if app_dir.is_file():
        return str(app_dir.resolve())
    file = app_dir / "lumi.toml"
    return str(file.resolve()) if file.is_file() else None
