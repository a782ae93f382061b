"""The memory broker: the whole broker contract inside one event loop, for tests and scripts."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Sequence

from lumi.brokers.base import (
    Backoff,
    Broker,
    Delivery,
    DeliveryHandler,
    Reject,
    dead_letter_topic,
)
from lumi.events import Envelope

log = logging.getLogger("lumi.brokers.memory")


@dataclasses.dataclass
class _Group:
    topic: str
    name: str
    offset: int
    max_attempts: int
    handlers: list[DeliveryHandler] = dataclasses.field(default_factory=list)
    turn: int = 0
    task: asyncio.Task[None] | None = None


class MemoryBroker(Broker):
    """Keeps every topic as a list in memory; one ordered consumer task per group."""

    name = "memory"

    def __init__(self, *, backoff: Backoff | None = None) -> None:
        self.topics: dict[str, list[Envelope]] = {}
        self.backoff = backoff or Backoff(initial=0.01, maximum=1.0)
        self._groups: dict[tuple[str, str], _Group] = {}
        self._changed = asyncio.Condition()
        self._closed = False

    async def publish(self, topic: str, envelopes: Sequence[Envelope]) -> None:
        if self._closed:
            raise RuntimeError("broker is closed")
        self.topics.setdefault(topic, []).extend(envelopes)
        async with self._changed:
            self._changed.notify_all()

    async def subscribe(
        self,
        topic: str,
        group: str,
        handler: DeliveryHandler,
        *,
        max_attempts: int = 5,
        start: str = "earliest",
    ) -> None:
        key = (topic, group)
        existing = self._groups.get(key)
        if existing is not None:
            existing.handlers.append(handler)
            return
        offset = 0 if start == "earliest" else len(self.topics.get(topic, []))
        state = _Group(topic, group, offset, max_attempts, [handler])
        self._groups[key] = state
        state.task = asyncio.create_task(self._consume(state), name=f"lumi-memory-{topic}-{group}")

    async def _consume(self, group: _Group) -> None:
        while not self._closed:
            log_ = self.topics.get(group.topic, [])
            if group.offset >= len(log_):
                async with self._changed:
                    await self._changed.wait_for(
                        lambda: self._closed or group.offset < len(self.topics.get(group.topic, []))
                    )
                continue
            envelope = log_[group.offset]
            await self._deliver(group, envelope)
            group.offset += 1

    async def _deliver(self, group: _Group, envelope: Envelope) -> None:
        for attempt in range(1, group.max_attempts + 1):
            handler = group.handlers[group.turn % len(group.handlers)]
            group.turn += 1
            try:
                await handler(Delivery(group.topic, group.name, envelope, attempt))
                return
            except asyncio.CancelledError:
                raise
            except Reject as exc:
                log.warning(
                    "event %s on %s rejected by %s: %s", envelope.id, group.topic, group.name, exc
                )
                break
            except Exception as exc:
                log.warning(
                    "event %s on %s failed for %s (attempt %d/%d): %s",
                    envelope.id, group.topic, group.name, attempt, group.max_attempts, exc,
                )  # fmt: skip
                if attempt < group.max_attempts:
                    await asyncio.sleep(self.backoff.delay(attempt))
        dlq = dead_letter_topic(group.topic, group.name)
        self.topics.setdefault(dlq, []).append(envelope)

    async def aclose(self) -> None:
        self._closed = True
        async with self._changed:
            self._changed.notify_all()
        for group in self._groups.values():
            if group.task is not None:
                group.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await group.task
        self._groups.clear()
