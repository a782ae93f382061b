"""Event brokers, chosen by the ``events`` config value.

``create_broker(url, app_dir=...)`` maps a value to a backend by its scheme: ``embedded`` (the
default: a durable log in ``<app>/.lumi/events.db``), ``memory`` (one process, for tests), and
the network brokers ``kafka://…``, ``nats://…``, ``redis://…`` (``rediss://…`` over TLS) and
``sns://…`` (the registry is :data:`lumi.backends.BROKERS`). A backend is one module whose
broker class has a ``from_url(url, *, app_dir, **options)`` classmethod; third-party packages
add schemes with a ``lumi.brokers`` entry point naming the class. A backend whose client
library is missing raises a :class:`ConfigError` that says which extra to install.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lumi.backends import BROKERS
from lumi.brokers.base import Broker
from lumi.model.errors import ConfigError


def scheme_of(url: str) -> str:
    """``"kafka://h:9092"`` → ``"kafka"``; ``"embedded?retention=3d"`` → ``"embedded"``."""
    if "://" in url:
        return url.split("://", 1)[0]
    return url.split("?", 1)[0]


def create_broker(url: str, *, app_dir: Path, **options: Any) -> Broker:
    """The broker for a config value such as ``"embedded"`` or ``"memory"`` (not started)."""
    cls = broker_class(scheme_of(url))
    broker: Broker = cls.from_url(url, app_dir=Path(app_dir), **options)
    return broker


def broker_class(scheme: str) -> Any:
    """The broker class for ``scheme``, or a ConfigError saying what would be valid."""
    try:
        return BROKERS.load(scheme)
    except ConfigError as exc:
        raise ConfigError(f"events: {exc}") from None


__all__ = ["Broker", "broker_class", "create_broker", "scheme_of"]
