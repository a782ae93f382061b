"""A toy broker: ``events = "toy://NAME"`` — every broker object with the same NAME in this
process is a separate connection to one shared in-process backend.

Each connection keeps its own subscriptions (closing it stops only those), while the topics,
consumer groups and dead letters live in the shared backend, as they would on a server.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from lumi.brokers.base import Broker, DeadLetter, DeliveryHandler, Subscription
from lumi.brokers.memory import MemoryBroker
from lumi.model.envelope import Envelope
from lumi.model.errors import ConfigError

_BACKENDS: dict[str, MemoryBroker] = {}


class ToyBroker(Broker):
    """One connection to the shared backend called ``name``."""

    name: ClassVar[str] = "toy"

    def __init__(self, backend: str, **options: Any) -> None:
        super().__init__()
        self.backend_name = backend
        self.options = options
        self._subscriptions: list[Subscription] = []

    @classmethod
    def from_url(cls, url: str, *, app_dir: Path, **options: Any) -> ToyBroker:
        name = url.removeprefix("toy://")
        if not name or "/" in name or name == url:
            raise ConfigError(f"events: a toy broker URL is toy://NAME, not {url!r}")
        return cls(name, **options)

    @property
    def _backend(self) -> MemoryBroker:
        backend = _BACKENDS.get(self.backend_name)
        if backend is None:
            backend = _BACKENDS[self.backend_name] = MemoryBroker(**self.options)
        return backend

    async def start(self) -> None:
        await self._backend.start()
        await super().start()

    async def publish(self, topic: str, envelopes: Sequence[Envelope]) -> None:
        await self._backend.publish(topic, envelopes)

    async def subscribe(
        self,
        topic: str,
        group: str | None,
        handler: DeliveryHandler,
        *,
        max_attempts: int = 5,
        start: str = "earliest",
    ) -> Subscription:
        subscription = await self._backend.subscribe(
            topic, group, handler, max_attempts=max_attempts, start=start
        )
        self._subscriptions.append(subscription)
        return subscription

    async def dead_letters(
        self, topic: str | None = None, group: str | None = None, *, limit: int = 1000
    ) -> list[DeadLetter]:
        return await self._backend.dead_letters(topic, group, limit=limit)

    async def replay(
        self,
        topic: str | None = None,
        group: str | None = None,
        *,
        event_ids: Sequence[str] | None = None,
    ) -> int:
        return await self._backend.replay(topic, group, event_ids=event_ids)

    async def aclose(self) -> None:
        while self._subscriptions:
            await self._subscriptions.pop().aclose()
