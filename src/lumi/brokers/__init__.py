"""Event brokers, chosen by the ``events`` config value.

``create_broker(url, app_dir=...)`` maps a value to a backend by its scheme: ``embedded`` (the
default: a durable log in ``<app>/.lumi/events.db``), ``memory`` (one process, for tests), and
the network brokers ``kafka://…`` and ``nats://…`` (``redis://…``, ``sns://…`` as their modules
land). A backend is one module whose broker class has a ``from_url(url, *, app_dir, **options)``
classmethod; third-party packages add schemes with a ``lumi.brokers`` entry point naming the
class. A backend whose client library is missing raises a :class:`ConfigError` that says which
extra to install.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import importlib.util
from pathlib import Path
from typing import Any

from lumi.brokers.base import Broker
from lumi.errors import ConfigError

# scheme → (module, class, pip extra for its client library or None)
BACKENDS: dict[str, tuple[str, str, str | None]] = {
    "embedded": ("lumi.brokers.embedded", "EmbeddedBroker", None),
    "memory": ("lumi.brokers.memory", "MemoryBroker", None),
    "kafka": ("lumi.brokers.kafka", "KafkaBroker", "kafka"),
    "nats": ("lumi.brokers.nats", "NatsBroker", "nats"),
    "redis": ("lumi.brokers.redis", "RedisBroker", "redis"),
    "sns": ("lumi.brokers.sns", "SnsBroker", "sns"),
}


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
    if scheme in BACKENDS:
        module_name, class_name, extra = BACKENDS[scheme]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                raise ConfigError(
                    f"events: the {scheme} broker is not available in this version of Lumi "
                    f"(available: {', '.join(available())})"
                ) from None
            raise ConfigError(
                f"events: the {scheme} broker needs the {exc.name!r} package: "
                f"pip install 'lumi-runtime[{extra or scheme}]'"
            ) from None
        return getattr(module, class_name)
    for entry in importlib.metadata.entry_points(group="lumi.brokers"):
        if entry.name == scheme:
            return entry.load()
    known = [*BACKENDS, *(e.name for e in importlib.metadata.entry_points(group="lumi.brokers"))]
    match = difflib.get_close_matches(scheme, known, n=1)
    hint = f"; did you mean {match[0]!r}?" if match else ""
    raise ConfigError(f"events: unknown event broker {scheme!r} (valid: {', '.join(known)}){hint}")


def available() -> list[str]:
    """Schemes whose module ships with this Lumi."""
    return [
        scheme
        for scheme, (module, _, _) in BACKENDS.items()
        if importlib.util.find_spec(module) is not None
    ]


__all__ = ["BACKENDS", "Broker", "available", "broker_class", "create_broker", "scheme_of"]
