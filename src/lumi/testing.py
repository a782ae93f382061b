"""The testing kit: test a service alone, or a whole app in one process.

* :func:`worker` — one service instance with every capability faked (nameko's
  ``worker_factory``): call its methods directly and assert on the fakes and on
  :func:`published` events.
* :func:`call` — call one method of a service instance through the real dispatcher (validation,
  error mapping, result serialization) without an app.
* :class:`lumi.App` with ``fakes={Inventory: FakeInventory()}`` — an app with some capabilities
  replaced; :func:`capture_events` records what it publishes.
* :func:`wait_until` — wait on a condition with a timeout, never a bare sleep.

The pytest plugin (``lumi.pytest_plugin``, loaded automatically) exposes these as fixtures.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar
from unittest import mock

import pydantic_core

from lumi.brokers.base import Broker
from lumi.model.envelope import Envelope
from lumi.model.interface import ServiceInterface
from lumi.model.reflect import reflect
from lumi.model.service import EventSpec, Service
from lumi.pipeline.client import Client
from lumi.pipeline.dispatch import Dispatcher
from lumi.pipeline.publish import EventSink
from lumi.runtimes.app import App
from lumi.transports.local import LocalChannel

S = TypeVar("S", bound=Service)


@dataclasses.dataclass(frozen=True)
class Published:
    """An event a service published: its topic, the payload as given, and its envelope."""

    topic: str
    payload: Any
    envelope: Envelope | None = None

    @property
    def data(self) -> Any:
        """The payload as it travels (JSON-decoded)."""
        if self.envelope is None:
            return None
        return pydantic_core.from_json(self.envelope.data)


class _CapturingSink(EventSink):
    """An event sink that records instead of sending (validation still applies)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.source = f"/lumi/test/{service}"
        self._adapters = {}
        self.published: list[Published] = []

    async def publish(self, spec: EventSpec[Any], payload: Any, *, key: str | None = None) -> str:
        envelope = self.envelope(spec, payload, key)
        self.published.append(Published(spec.topic, payload, envelope))
        return envelope.id

    async def publish_many(
        self, spec: EventSpec[Any], payloads: list[Any], *, key: str | None = None
    ) -> list[str]:
        return [await self.publish(spec, p, key=key) for p in payloads]


class FakeService:
    """A stand-in for a capability: every method of its interface is an ``AsyncMock``.

    Unknown methods raise ``AttributeError`` (the fake is specced by the interface), so a test
    cannot silently call something the real service does not have.
    """

    def __init__(self, interface: ServiceInterface) -> None:
        self._interface = interface
        for name in interface.methods:
            setattr(self, name, mock.AsyncMock(name=f"{interface.name}.{name}"))

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(
            f"fake {self._interface.name} has no method {name!r} "
            f"(methods: {', '.join(sorted(self._interface.methods)) or 'none'})"
        )

    def __repr__(self) -> str:
        return f"<fake {self._interface.name}>"


def worker(service: type[S], /, **capabilities: object) -> S:
    """An instance of ``service`` ready for a unit test.

    Capabilities given by keyword (attribute name → object) are injected as they are; the
    others become :class:`FakeService` instances. Published events are recorded (see
    :func:`published`). ``startup`` is not run: call it yourself if the test needs it.
    """
    reflected = reflect(service)
    unknown = set(capabilities) - set(reflected.capabilities)
    if unknown:
        raise TypeError(
            f"{reflected.interface.name} has no capability {', '.join(sorted(unknown))} "
            f"(capabilities: {', '.join(sorted(reflected.capabilities)) or 'none'})"
        )
    instance = service()
    instance._lumi_events = _CapturingSink(reflected.interface.name)  # type: ignore[attr-defined]
    for attr, capability in reflected.capabilities.items():
        fake = capabilities.get(attr)
        setattr(
            instance, attr, fake if fake is not None else FakeService(reflect(capability).interface)
        )
    return instance


def published(instance: Service) -> list[Published]:
    """The events a :func:`worker` instance has published, in order."""
    sink = getattr(instance, "_lumi_events", None)
    if not isinstance(sink, _CapturingSink):
        raise TypeError("published() needs an instance made by lumi.testing.worker()")
    return sink.published


async def call(instance: Service, method: str, /, **arguments: Any) -> Any:
    """Call ``method`` of ``instance`` through the dispatcher: arguments are validated and
    errors mapped exactly as for a remote call; returns the typed result."""
    dispatcher = Dispatcher()
    dispatcher.add(instance)
    client = Client.for_service(type(instance), LocalChannel(dispatcher.handle).call)
    return await client.call(method, **arguments)


class EventLog(list[Published]):
    """Events captured from an app's broker, in publish order."""

    def topics(self) -> list[str]:
        return [event.topic for event in self]

    def of(self, topic: str) -> list[Published]:
        return [event for event in self if event.topic == topic]

    async def wait_for(
        self, count: int = 1, *, topic: str | None = None, timeout: float = 5.0
    ) -> list[Published]:
        """Wait until at least ``count`` events (of ``topic``) were captured."""
        await wait_until(
            lambda: len(self.of(topic) if topic else self) >= count,
            timeout=timeout,
            message=f"{count} event(s){f' on {topic}' if topic else ''}",
        )
        return self.of(topic) if topic else list(self)


@contextmanager
def capture_events(target: App | Broker) -> Iterator[EventLog]:
    """Record every event published through an app's (or a broker's) ``publish``."""
    broker = target.broker if isinstance(target, App) else target
    captured = EventLog()
    original = broker.publish

    async def publish(topic: str, envelopes: Sequence[Envelope]) -> None:
        await original(topic, envelopes)
        captured.extend(Published(topic, pydantic_core.from_json(e.data), e) for e in envelopes)

    broker.publish = publish  # type: ignore[method-assign]
    try:
        yield captured
    finally:
        broker.publish = original  # type: ignore[method-assign]


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]],
    *,
    timeout: float = 5.0,
    interval: float = 0.005,
    message: str = "condition",
) -> None:
    """Poll ``condition`` until it holds; raise ``TimeoutError`` naming it after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {message}")
        await asyncio.sleep(interval)


__all__ = [
    "EventLog",
    "FakeService",
    "Published",
    "call",
    "capture_events",
    "published",
    "wait_until",
    "worker",
]
