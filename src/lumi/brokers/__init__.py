"""Event brokers, chosen by the ``events`` config value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lumi.brokers.base import Broker
from lumi.errors import ConfigError


def create_broker(url: str, *, app_dir: Path, **options: Any) -> Broker:
    """The broker for a config value such as ``"memory"``."""
    if url == "memory":
        from lumi.brokers.memory import MemoryBroker

        return MemoryBroker(**options)
    raise ConfigError(f"event broker {url!r} is not available in this build")
