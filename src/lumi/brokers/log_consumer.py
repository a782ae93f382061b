"""The consumer side shared by brokers that keep their own log (memory, embedded).

Such a broker stores, per consumer group, the events the group has taken from the topic but not
yet acknowledged ("pending"), each with an attempt count, a time it becomes visible again and
the member leasing it. It implements :class:`GroupLog` over that state; :class:`LogConsumer`
runs the delivery loop on top, identically for every such broker:

claim eligible events (visible, and not behind an earlier pending event with the same key) →
run handlers concurrently → acknowledge, schedule a retry after a backoff, or dead-letter →
claim again when woken (new events, a handler finished, a retry or a lease fell due).

Leases are renewed while a handler runs, so only a member that died (or hung) loses its events
to the others, after the lease (visibility timeout) runs out.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable

import pydantic_core

from lumi.brokers.base import Backoff, Delivery, DeliveryHandler, Reject, Subscription
from lumi.model.context import new_id
from lumi.model.envelope import Envelope, EnvelopeError
from lumi.model.errors import LumiError

log = logging.getLogger("lumi.brokers")


@dataclasses.dataclass(slots=True)
class Claimed:
    """An event leased to one member: its position in the log, attempt number and bytes."""

    seq: int
    attempt: int
    body: bytes


@dataclasses.dataclass(slots=True)
class Claim:
    """What a claim returned: events to handle now, and when the next one falls due (a retry
    delay or a lease ending), if any is waiting."""

    items: list[Claimed]
    next_due: float | None = None


class GroupLog(abc.ABC):
    """The pending state of one (topic, group), as a broker stores it."""

    @abc.abstractmethod
    async def claim(self, member: str, limit: int, lease: float, max_attempts: int) -> Claim:
        """Lease up to ``limit`` eligible events to ``member`` for ``lease`` seconds. Events
        whose lease ran out after the last allowed attempt are dead-lettered, not returned."""

    @abc.abstractmethod
    async def ack(self, seq: int) -> None:
        """The event was handled: forget it."""

    @abc.abstractmethod
    async def retry(self, member: str, seq: int, delay: float, error: str) -> None:
        """The attempt failed: make the event visible again after ``delay`` seconds."""

    @abc.abstractmethod
    async def dead_letter(self, seq: int, reason: str) -> None:
        """Move the event to the group's dead-letter topic with ``reason``."""

    @abc.abstractmethod
    async def release(self, member: str, seqs: list[int]) -> None:
        """Give back leases of attempts that did not run to the end (the consumer stopped)."""

    @abc.abstractmethod
    async def extend(self, member: str, seqs: list[int], lease: float) -> None:
        """Renew ``member``'s leases on ``seqs``."""


@dataclasses.dataclass(frozen=True, slots=True)
class ConsumerOptions:
    """How a member consumes: handlers in flight at once, the lease (visibility timeout),
    redelivery backoff, how long to drain at close, and the fallback poll interval."""

    concurrency: int = 32
    lease: float = 30.0
    backoff: Backoff = dataclasses.field(default_factory=Backoff)
    drain_timeout: float = 30.0
    poll_interval: float = 1.0


class LogConsumer(Subscription):
    """One member of a group: claims from a :class:`GroupLog` and runs ``handler``."""

    def __init__(
        self,
        group_log: GroupLog,
        handler: DeliveryHandler,
        *,
        topic: str,
        group: str,
        max_attempts: int,
        options: ConsumerOptions,
    ) -> None:
        self.log = group_log
        self.handler = handler
        self.topic = topic
        self.group = group
        self.max_attempts = max_attempts
        self.options = options
        self.member = new_id()
        self._kick = asyncio.Event()
        self._inflight: dict[int, asyncio.Task[None]] = {}
        self._closing = False
        self._loop_task: asyncio.Task[None] | None = None
        self._lease_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        name = f"lumi-consume-{self.topic}-{self.group}"
        self._loop_task = asyncio.create_task(self._run(), name=name)
        self._lease_task = asyncio.create_task(self._renew_leases(), name=f"{name}-leases")

    def wake(self) -> None:
        """New events may be eligible (called by the broker on publish or replay)."""
        self._kick.set()

    async def _run(self) -> None:
        opts = self.options
        while not self._closing:
            free = opts.concurrency - len(self._inflight)
            timeout: float | None = None  # all slots busy: a finishing handler kicks
            self._kick.clear()  # before claiming, so a wake-up during the claim is not lost
            if free > 0:
                try:
                    claim = await self.log.claim(self.member, free, opts.lease, self.max_attempts)
                except Exception:
                    log.exception("claiming events of %s for %s failed", self.topic, self.group)
                    claim = Claim([])
                for item in claim.items:
                    self._inflight[item.seq] = asyncio.create_task(self._handle(item))
                if len(claim.items) == free:
                    continue
                timeout = opts.poll_interval
                if claim.next_due is not None:
                    timeout = min(timeout, max(0.0, claim.next_due - time.time()))
            if not self._kick.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._kick.wait(), timeout)

    async def _handle(self, item: Claimed) -> None:
        try:
            await self._attempt(item)
        except Exception:
            # Storing the outcome failed (e.g. the database is locked for too long): the lease
            # runs out and the event is delivered again — at-least-once still holds.
            log.exception("recording the outcome of event %d on %s failed", item.seq, self.topic)
        finally:
            self._inflight.pop(item.seq, None)
            self._kick.set()

    async def _attempt(self, item: Claimed) -> None:
        try:
            envelope = Envelope.from_json(item.body)
        except EnvelopeError as exc:
            await self.log.dead_letter(item.seq, f"not a valid event: {exc}")
            return
        delivery = Delivery(self.topic, self.group, envelope, item.attempt)
        try:
            await self.handler(delivery)
        except Reject as exc:
            log.warning(
                "event %s on %s rejected by %s: %s", envelope.id, self.topic, self.group, exc
            )
            await self.log.dead_letter(item.seq, f"rejected: {exc}")
        except Exception as exc:
            # A LumiError names its code already ("INTERNAL: ValueError: ..."); others: their type
            error = str(exc) if isinstance(exc, LumiError) else f"{type(exc).__name__}: {exc}"
            log.warning(
                "event %s on %s failed for %s (attempt %d/%d): %s",
                envelope.id, self.topic, self.group, item.attempt, self.max_attempts, error,
            )  # fmt: skip
            if item.attempt >= self.max_attempts:
                await self.log.dead_letter(
                    item.seq, f"failed {item.attempt} time(s); last error: {error}"
                )
            else:
                delay = self.options.backoff.delay(item.attempt)
                await self.log.retry(self.member, item.seq, delay, error)
        else:
            await self.log.ack(item.seq)

    async def _renew_leases(self) -> None:
        interval = self.options.lease / 3
        while True:
            await asyncio.sleep(interval)
            if self._inflight:
                try:
                    await self.log.extend(self.member, list(self._inflight), self.options.lease)
                except Exception:
                    log.exception("renewing leases on %s for %s failed", self.topic, self.group)

    async def _stop_loop(self) -> None:
        """Wait for the claiming loop to see ``_closing`` and end."""
        if self._loop_task is not None:
            await self._loop_task

    async def aclose(self) -> None:
        """Stop claiming, let in-flight handlers finish (up to ``drain_timeout``), then cancel
        the rest and give their events back."""
        if self._closing:
            return
        self._closing = True
        self._kick.set()
        await self._stop_loop()
        if self._inflight:
            await asyncio.wait(list(self._inflight.values()), timeout=self.options.drain_timeout)
        unfinished = list(self._inflight.items())
        for _, task in unfinished:
            task.cancel()
        for _, task in unfinished:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._lease_task is not None:
            self._lease_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lease_task
        if unfinished:
            with contextlib.suppress(Exception):
                await self.log.release(self.member, [seq for seq, _ in unfinished])


ReadLog = Callable[[int, int], Awaitable[list[tuple[int, bytes]]]]
"""``read(after, limit)``: up to ``limit`` (position, event bytes) of a topic after ``after``."""


class LogReader(Subscription):
    """An ephemeral reader (``group=None``): follows a topic from a position, keeps no state on
    the broker, and does not retry — a failing handler is logged and the reader moves on."""

    def __init__(
        self, read: ReadLog, handler: DeliveryHandler, *, topic: str, after: int,
        poll_interval: float = 1.0,
    ) -> None:  # fmt: skip
        self.read = read
        self.handler = handler
        self.topic = topic
        self.position = after
        self.poll_interval = poll_interval
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"lumi-read-{self.topic}")

    def wake(self) -> None:
        self._kick.set()

    async def _run(self) -> None:
        while True:
            self._kick.clear()
            try:
                batch = await self.read(self.position, 256)
            except Exception:
                log.exception("reading %s failed", self.topic)
                batch = []
            for seq, body in batch:
                self.position = seq
                try:
                    envelope = Envelope.from_json(body)
                    await self.handler(Delivery(self.topic, None, envelope, 1))
                except Exception:
                    log.exception("a reader of %s failed on the event at %d", self.topic, seq)
            if batch:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self.poll_interval)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def lease_expired_reason(attempts: int, error: str) -> str:
    """Why an event whose last allowed attempt never reported back is dead-lettered."""
    reason = (
        f"gave up after {attempts} attempt(s): the last did not finish within its lease "
        f"(the consumer died or hung)"
    )
    return f"{reason}; earlier error: {error}" if error else reason


def unreadable_envelope(topic: str, seq: int, body: bytes) -> Envelope:
    """Bytes on a topic that are not a CloudEvent, wrapped so they can be dead-lettered."""
    return Envelope(
        id=f"unreadable-{seq}",
        source="/lumi/broker",
        type=topic,
        data=pydantic_core.to_json(body.decode("utf-8", "replace")),
    )


class Tracked(Subscription):
    """What ``subscribe`` returns: closing it also removes it from the broker's registry."""

    def __init__(
        self, registry: dict[str, list[LogConsumer | LogReader]], topic: str,
        inner: LogConsumer | LogReader,
    ) -> None:  # fmt: skip
        self.registry = registry
        self.topic = topic
        self.inner = inner

    async def aclose(self) -> None:
        subscriptions = self.registry.get(self.topic, [])
        if self.inner in subscriptions:
            subscriptions.remove(self.inner)
        await self.inner.aclose()
