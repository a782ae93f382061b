"""The broker contract: how events travel. One abstract class; one module per backend.

Semantics every broker keeps (checked by ``tests/conformance``):

* Topics are ``<service>.<event>``. A consumer group is the subscribing service: each event
  reaches one member of each group (members are the service's replicas); a subscription with
  ``group=None`` is an ephemeral reader (``lumi events tail``) that keeps no state.
* Delivery is at-least-once. Order is kept per partition key (``Envelope.partitionkey``): an
  event is not delivered while an earlier event with the same key is in flight or waiting for
  a retry. Events without a key are unordered and may be handled concurrently.
* A handler that returns acknowledges. One that raises gets the event again after a backoff
  (:class:`Backoff`); after ``max_attempts`` deliveries — or at once for :class:`Reject` — the
  event moves to the group's dead-letter topic (:func:`dead_letter_topic`) carrying the reason,
  where :meth:`Broker.dead_letters` lists it and :meth:`Broker.replay` sends it back to the group.
* A new group starts from the earliest retained event (``start="earliest"``) or from the next
  one published (``"latest"``); an existing group resumes where it stopped.
* A publish that returned is stored as durably as the backend can.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, ClassVar, Self

from lumi.model.envelope import Envelope
from lumi.pipeline.consumer_dedupe import DedupeStore, MemoryDedupeStore


@dataclasses.dataclass(slots=True)
class Delivery:
    """One delivery attempt of one event to one consumer group (``group`` None: a reader)."""

    topic: str
    group: str | None
    envelope: Envelope
    attempt: int = 1


DeliveryHandler = Callable[[Delivery], Awaitable[None]]


class Reject(Exception):
    """Raised by a delivery handler for an event that can never succeed (e.g. a payload that
    fails validation): the broker moves it to the dead-letter topic at once, without retries."""


@dataclasses.dataclass(frozen=True, slots=True)
class Backoff:
    """Redelivery delays: ``initial * multiplier**(attempt-1)``, capped at ``maximum``."""

    initial: float = 0.1
    multiplier: float = 2.0
    maximum: float = 30.0

    def delay(self, attempt: int) -> float:
        return float(min(self.maximum, self.initial * self.multiplier ** max(0, attempt - 1)))


@dataclasses.dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event that a group gave up on, and why."""

    topic: str  # the topic it was published on
    group: str
    envelope: Envelope  # as published (without the dead-letter extensions)
    reason: str
    attempts: int
    time: str  # when it was dead-lettered (RFC 3339)

    @classmethod
    def from_envelope(cls, topic: str, group: str, stored: Envelope) -> DeadLetter:
        ext = stored.extensions
        attempts = ext.get("deadletterattempts", "0")
        return cls(
            topic=topic,
            group=ext.get("deadlettergroup", group),
            envelope=stored.revived(),
            reason=ext.get("deadletterreason", ""),
            attempts=int(attempts) if attempts.isdigit() else 0,
            time=ext.get("deadlettertime", ""),
        )


def dead_letter_topic(topic: str, group: str) -> str:
    """Where ``group``'s failed events of ``topic`` go: ``<topic>.<group>.dlq``."""
    return f"{topic}.{group}.dlq"


def split_dead_letter_topic(name: str) -> tuple[str, str] | None:
    """``(topic, group)`` for a dead-letter topic name, or None for any other topic."""
    if not name.endswith(".dlq"):
        return None
    parts = name[: -len(".dlq")].split(".")
    if len(parts) < 3:
        return None
    return ".".join(parts[:-1]), parts[-1]


def check_subscription(topic: str, max_attempts: int, start: str) -> None:
    """Raise ValueError naming a bad ``subscribe`` argument (every broker calls this first)."""
    if not topic:
        raise ValueError("subscribe needs a topic, e.g. 'Orders.placed'")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
    if start not in ("earliest", "latest"):
        raise ValueError(f"start must be 'earliest' or 'latest', not {start!r}")


class Subscription(abc.ABC):
    """A running subscription; :meth:`aclose` stops it after in-flight handlers finish."""

    @abc.abstractmethod
    async def aclose(self) -> None: ...


class Broker(abc.ABC):
    """A connection to an event backend; use as ``async with broker: ...``."""

    name: ClassVar[str]
    started: bool
    _dedupe: DedupeStore | None

    def __init__(self) -> None:
        self.started = False
        self._dedupe = None

    async def start(self) -> None:
        """Connect; called by ``__aenter__``. Calling it again does nothing."""
        self.started = True

    @abc.abstractmethod
    async def publish(self, topic: str, envelopes: Sequence[Envelope]) -> None:
        """Store ``envelopes`` on ``topic`` as one batch; returns once they are stored."""

    @abc.abstractmethod
    async def subscribe(
        self,
        topic: str,
        group: str | None,
        handler: DeliveryHandler,
        *,
        max_attempts: int = 5,
        start: str = "earliest",
    ) -> Subscription:
        """Consume ``topic`` as a member of ``group``; returns once consuming has started, so
        every event published afterwards reaches the group."""

    @abc.abstractmethod
    async def dead_letters(
        self, topic: str | None = None, group: str | None = None, *, limit: int = 1000
    ) -> list[DeadLetter]:
        """Dead letters (of ``topic``, of ``group``), oldest first."""

    @abc.abstractmethod
    async def replay(
        self,
        topic: str | None = None,
        group: str | None = None,
        *,
        event_ids: Sequence[str] | None = None,
    ) -> int:
        """Send dead letters back to the group that failed them (only those with
        ``event_ids``, if given); they leave the dead-letter topic. Returns how many."""

    def dedupe_store(self) -> DedupeStore:
        """Where idempotent consumers remember handled event ids
        (:mod:`lumi.pipeline.consumer_dedupe`). By default a bounded memory in this process; a
        broker with shared storage overrides it."""
        if self._dedupe is None:
            self._dedupe = MemoryDedupeStore()
        return self._dedupe

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Stop consumers (letting in-flight handlers finish) and release connections."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def oldest_letters(found: Iterable[tuple[Any, DeadLetter]], limit: int) -> list[DeadLetter]:
    """The first ``limit`` letters of ``(order, letter)`` pairs, in the order's order (what each
    broker's :meth:`Broker.dead_letters` returns, oldest first)."""
    return [letter for _, letter in sorted(found, key=lambda pair: pair[0])[:limit]]
