"""The memory broker: the whole broker contract inside one event loop, for tests and scripts.

Topics are lists in memory and nothing survives the process, but every other rule of the
contract holds exactly as on the embedded log (the same consumer loop runs on both): consumer
groups, per-key order, leases, backoff, dead letters and replay.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lumi.brokers.base import (
    Backoff,
    Broker,
    DeadLetter,
    DeliveryHandler,
    Subscription,
    check_subscription,
    dead_letter_topic,
    oldest_letters,
    split_dead_letter_topic,
)
from lumi.brokers.log_consumer import (
    Claim,
    Claimed,
    ConsumerOptions,
    GroupLog,
    LogConsumer,
    LogReader,
    ReadLog,
    Tracked,
    lease_expired_reason,
    unreadable_envelope,
)
from lumi.model.envelope import Envelope
from lumi.model.errors import ConfigError

_WINDOW = 1000  # pending events per group at most; more are taken as these are acknowledged


@dataclasses.dataclass(slots=True)
class _PendingEvent:
    key: str | None
    body: bytes
    attempts: int = 0
    visible_at: float = 0.0
    owner: str | None = None
    error: str = ""


class _MemoryGroup(GroupLog):
    """One group's position in a topic and its pending events."""

    def __init__(self, broker: MemoryBroker, topic: str, group: str, start: str) -> None:
        self.broker = broker
        self.topic = topic
        self.group = group
        self.next_index = 0 if start == "earliest" else len(broker._log.get(topic, []))
        self.pending: dict[int, _PendingEvent] = {}

    def _take_new(self) -> None:
        entries = self.broker._log.get(self.topic, [])
        while self.next_index < len(entries) and len(self.pending) < _WINDOW:
            seq, envelope, body = entries[self.next_index]
            self.pending[seq] = _PendingEvent(envelope.partitionkey, body)
            self.next_index += 1

    async def claim(self, member: str, limit: int, lease: float, max_attempts: int) -> Claim:
        self._take_new()
        now = time.time()
        items: list[Claimed] = []
        blocked: set[str] = set()
        next_due: float | None = None
        for seq, pending in list(self.pending.items()):
            key = pending.key
            if key is not None:
                if key in blocked:
                    continue
                blocked.add(key)  # later events with this key wait for this one
            if pending.visible_at > now:
                next_due = (
                    pending.visible_at if next_due is None else min(next_due, pending.visible_at)
                )
                continue
            if len(items) >= limit:
                continue
            if pending.attempts >= max_attempts:
                await self.dead_letter(seq, lease_expired_reason(pending.attempts, pending.error))
                continue
            pending.attempts += 1
            pending.owner = member
            pending.visible_at = now + lease
            items.append(Claimed(seq, pending.attempts, pending.body))
        return Claim(items, next_due)

    async def ack(self, seq: int) -> None:
        self.pending.pop(seq, None)

    async def retry(self, member: str, seq: int, delay: float, error: str) -> None:
        pending = self.pending.get(seq)
        if pending is not None and pending.owner == member:
            pending.owner = None
            pending.visible_at = time.time() + delay
            pending.error = error

    async def dead_letter(self, seq: int, reason: str) -> None:
        pending = self.pending.pop(seq, None)
        if pending is None:
            return
        try:
            envelope = Envelope.from_json(pending.body)
        except ValueError:
            envelope = unreadable_envelope(self.topic, seq, pending.body)
        stored = envelope.dead_lettered(group=self.group, reason=reason, attempts=pending.attempts)
        self.broker._append(dead_letter_topic(self.topic, self.group), [stored])

    async def release(self, member: str, seqs: list[int]) -> None:
        for seq in seqs:
            pending = self.pending.get(seq)
            if pending is not None and pending.owner == member:
                pending.owner = None
                pending.visible_at = 0.0
                pending.attempts = max(0, pending.attempts - 1)

    async def extend(self, member: str, seqs: list[int], lease: float) -> None:
        until = time.time() + lease
        for seq in seqs:
            pending = self.pending.get(seq)
            if pending is not None and pending.owner == member:
                pending.visible_at = until


class MemoryBroker(Broker):
    """Keeps every topic as a list in memory; consumers run as tasks in this event loop."""

    name = "memory"

    def __init__(
        self,
        *,
        backoff: Backoff | None = None,
        lease: float = 30.0,
        concurrency: int = 32,
        drain_timeout: float = 30.0,
    ) -> None:
        super().__init__()
        self.options = ConsumerOptions(
            concurrency=concurrency,
            lease=lease,
            backoff=backoff or Backoff(initial=0.01, maximum=1.0),
            drain_timeout=drain_timeout,
        )
        self._log: dict[str, list[tuple[int, Envelope, bytes]]] = {}
        self._seq = itertools.count(1)
        self._groups: dict[tuple[str, str], _MemoryGroup] = {}
        self._subscriptions: dict[str, list[LogConsumer | LogReader]] = {}
        self._closed = False

    @classmethod
    def from_url(cls, url: str, *, app_dir: Path, **options: Any) -> MemoryBroker:
        """``memory``: takes no options in the URL (``app_dir`` is unused)."""
        if url != "memory":
            raise ConfigError(f"events: the memory broker takes no options, so {url!r} is invalid")
        return cls(**options)

    @property
    def topics(self) -> dict[str, list[Envelope]]:
        """Every topic's events, oldest first (dead-letter topics included)."""
        return {topic: [e for _, e, _ in entries] for topic, entries in self._log.items()}

    async def publish(self, topic: str, envelopes: Sequence[Envelope]) -> None:
        if self._closed:
            raise RuntimeError("the memory broker is closed")
        self._append(topic, envelopes)

    def _append(self, topic: str, envelopes: Sequence[Envelope]) -> None:
        entries = self._log.setdefault(topic, [])
        entries.extend((next(self._seq), e, e.to_json()) for e in envelopes)
        for subscription in self._subscriptions.get(topic, ()):
            subscription.wake()

    async def subscribe(
        self,
        topic: str,
        group: str | None,
        handler: DeliveryHandler,
        *,
        max_attempts: int = 5,
        start: str = "earliest",
    ) -> Subscription:
        check_subscription(topic, max_attempts, start)
        if self._closed:
            raise RuntimeError("the memory broker is closed")
        subscription: LogConsumer | LogReader
        if group is None:
            after = 0 if start == "earliest" else self._last_seq(topic)
            subscription = LogReader(self._reader(topic), handler, topic=topic, after=after)
        else:
            state = self._groups.get((topic, group))
            if state is None:
                state = self._groups[topic, group] = _MemoryGroup(self, topic, group, start)
            subscription = LogConsumer(
                state,
                handler,
                topic=topic,
                group=group,
                max_attempts=max_attempts,
                options=self.options,
            )
        self._subscriptions.setdefault(topic, []).append(subscription)
        subscription.start()
        return Tracked(self._subscriptions, topic, subscription)

    def _last_seq(self, topic: str) -> int:
        entries = self._log.get(topic)
        return entries[-1][0] if entries else 0

    def _reader(self, topic: str) -> ReadLog:
        async def read(after: int, limit: int) -> list[tuple[int, bytes]]:
            entries = self._log.get(topic, [])
            return [(seq, body) for seq, _, body in entries if seq > after][:limit]

        return read

    async def dead_letters(
        self, topic: str | None = None, group: str | None = None, *, limit: int = 1000
    ) -> list[DeadLetter]:
        letters: list[tuple[int, DeadLetter]] = []
        for name, entries in self._log.items():
            origin = split_dead_letter_topic(name)
            if origin is None or (topic and origin[0] != topic) or (group and origin[1] != group):
                continue
            letters.extend((seq, DeadLetter.from_envelope(*origin, e)) for seq, e, _ in entries)
        return oldest_letters(letters, limit)

    async def replay(
        self,
        topic: str | None = None,
        group: str | None = None,
        *,
        event_ids: Sequence[str] | None = None,
    ) -> int:
        wanted = None if event_ids is None else set(event_ids)
        count = 0
        for name in list(self._log):
            origin = split_dead_letter_topic(name)
            if origin is None or (topic and origin[0] != topic) or (group and origin[1] != group):
                continue
            kept: list[tuple[int, Envelope, bytes]] = []
            state = self._groups.get(origin)
            if state is None:
                state = self._groups[origin] = _MemoryGroup(self, *origin, "latest")
            for entry in self._log[name]:
                if wanted is not None and entry[1].id not in wanted:
                    kept.append(entry)
                    continue
                revived = entry[1].revived()
                state.pending[next(self._seq)] = _PendingEvent(
                    revived.partitionkey, revived.to_json()
                )
                count += 1
            self._log[name] = kept
            for subscription in self._subscriptions.get(origin[0], ()):
                subscription.wake()
        return count

    async def aclose(self) -> None:
        self._closed = True
        subscriptions = [s for subs in self._subscriptions.values() for s in subs]
        self._subscriptions.clear()
        for subscription in subscriptions:
            await subscription.aclose()
