"""The broker contract: how events travel. One abstract class; one module per backend.

Semantics every broker keeps (checked by ``tests/conformance``): topics are
``<service>.<event>``; a consumer group is the subscribing service and each event reaches one
member of each group; delivery is at-least-once; order is kept per partition key; a handler that
returns acknowledges, one that raises gets the event again after a backoff, and after
``max_attempts`` deliveries the event moves to the group's dead-letter topic
(:func:`dead_letter_topic`). A publish that returned is stored as durably as the backend can.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import ClassVar, Self

from lumi.events import Envelope


@dataclasses.dataclass(slots=True)
class Delivery:
    """One delivery attempt of one event to one consumer group."""

    topic: str
    group: str
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


def dead_letter_topic(topic: str, group: str) -> str:
    return f"{topic}.{group}.dlq"


class Broker(abc.ABC):
    """A connection to an event backend; use as ``async with broker: ...``."""

    name: ClassVar[str]

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect; called by ``__aenter__``."""

    @abc.abstractmethod
    async def publish(self, topic: str, envelopes: Sequence[Envelope]) -> None:
        """Store ``envelopes`` on ``topic`` (as one batch where the backend can)."""

    @abc.abstractmethod
    async def subscribe(
        self,
        topic: str,
        group: str,
        handler: DeliveryHandler,
        *,
        max_attempts: int = 5,
        start: str = "earliest",
    ) -> None:
        """Start consuming ``topic`` as a member of ``group``; returns once consuming started."""

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
