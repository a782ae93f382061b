"""The deployed app's folder: a generated ``lumi.toml`` and the app's local state, no source.

Configuration decides how a service runs, the artifact what runs: the generated file is the
app's own configuration for the environment (``[env.NAME]`` applied), with ``app.services``
naming the entries of the deployed artifacts and only the deployed services' tables. Every
replica loads it (``lumi.runtimes.process`` reads its spec's app folder) and imports the
entries from its own artifact's environment; the folder's ``.lumi/`` holds what ``lumi run``'s
would: the registry, logs, traces, the embedded event log, and the route table.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lumi.config import AppConfig, load_config
from lumi.deploy.errors import DeployError

CONFIG_FILE = "lumi.toml"
_HEADER = (
    "# Written by lumi deploy: the deployed services of this environment, configured as the\n"
    "# app's lumi.toml says. Do not edit; deploy again instead.\n"
)


def app_config_data(config: AppConfig, entries: Mapping[str, str]) -> dict[str, Any]:
    """The generated configuration of ``config``'s environment running ``entries`` (service →
    ``module:Class``), as TOML-ready data."""

    def dump(model: Any) -> dict[str, Any]:
        data: dict[str, Any] = model.model_dump(mode="json", exclude_none=True)
        return data

    services = {
        name: {k: v for k, v in dump(config.services[name]).items() if k != "requires"}
        for name in entries
        if name in config.services
    }
    data: dict[str, Any] = {
        "app": {
            "name": config.name,
            "version": config.app.version,
            "services": list(entries.values()),
        },
        "defaults": dump(config.defaults),
        "services": services,
        "tracing": dump(config.tracing),
        "resilience": dump(config.resilience),
        "security": dump(config.security),
    }
    if config.security.ca_dir:  # relative to the app's folder, not the deployed one
        data["security"]["ca_dir"] = str((config.root / config.security.ca_dir).resolve())
    if config.environment:
        data["env"] = {config.environment: {}}  # so replicas know which environment they are
    return data


def write_app(folder: Path, config: AppConfig, entries: Mapping[str, str]) -> AppConfig:
    """Write the deployed app's ``lumi.toml`` into ``folder``; the loaded, validated result."""
    try:
        import tomli_w
    except ImportError:
        raise DeployError(
            "lumi deploy needs tomli-w: pip install 'lumi-runtime[shipping]'"
        ) from None
    text = _HEADER + tomli_w.dumps(app_config_data(config, entries))
    path = folder / CONFIG_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return load_config(folder, config.environment)
