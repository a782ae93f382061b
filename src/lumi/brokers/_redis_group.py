"""One consumer group of the Redis broker, as the shared consumer loop sees it (a GroupLog).

The state lives in Redis (:mod:`._redis_scripts` explains it); this module turns the loop's calls
into script calls: ``claim`` is one script call, and acknowledgements that fall due in the same
turn of the event loop are sent together as one ``settle`` call. While a member has nothing to
do it blocks in ``XREAD`` on the topic and ready streams (a :class:`Watcher`), so a new event
wakes it at once instead of at its next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any

from lumi.brokers.base import dead_letter_topic
from lumi.brokers.log_consumer import (
    Claim,
    Claimed,
    GroupLog,
    LogConsumer,
    lease_expired_reason,
    unreadable_envelope,
)
from lumi.model.envelope import Envelope, EnvelopeError

if TYPE_CHECKING:
    from lumi.brokers.redis import RedisBroker

log = logging.getLogger("lumi.brokers.redis")


def encode_seq(letter: str, entry_id: str) -> int:
    """A stream entry as the integer position the consumer loop keys its work by."""
    ms, _, seq = entry_id.partition("-")
    return ((int(ms) << 64 | int(seq or 0)) << 1) | (letter == "r")


def decode_seq(value: int) -> tuple[str, str]:
    letter = "r" if value & 1 else "m"
    raw = value >> 1
    return letter, f"{raw >> 64}-{raw & ((1 << 64) - 1)}"


def seq_of_tag(tag: bytes) -> int:
    """:func:`encode_seq` of a tag as the claim script returns it (``b"m1700000000000-0"``)."""
    ms, _, seq = tag[1:].partition(b"-")
    return ((int(ms) << 64 | int(seq or 0)) << 1) | (tag[0] == 114)  # 114: ord("r")


@dataclasses.dataclass(slots=True)
class _Settle:
    tag: bytes
    dlq_body: bytes
    dlq_key: str | None
    done: asyncio.Future[None]


class RedisGroup(GroupLog):
    """The pending state of one (topic, group) in Redis, for one member process."""

    def __init__(self, broker: RedisBroker, topic: str, group: str) -> None:
        self.broker = broker
        self.topic = topic
        self.group = group
        keys = broker.keys
        self.main = keys.stream(topic)
        self.ready = keys.private(topic, group, "ready")
        self.heads = keys.private(topic, group, "heads")
        self.keyof = keys.private(topic, group, "keyof")
        self.meta = keys.private(topic, group, "meta")
        self.parked_prefix = keys.private(topic, group, "parked:")
        self.dlq_topic = dead_letter_topic(topic, group)
        self.dlq = keys.stream(self.dlq_topic)
        self.lease = broker.options.lease
        self.bodies: dict[int, tuple[bytes, int, bytes]] = {}  # in flight: body, attempt, tag
        self.drained = False  # the last claim took everything there was (the watcher waits)
        self._due: dict[int, float] = {}  # retries this member scheduled: when they fall due
        self._batch: list[_Settle] = []
        self._flushing = False
        self._flush_task: asyncio.Task[None] | None = None
        self.watcher: Watcher | None = None

    async def claim(self, member: str, limit: int, lease: float, max_attempts: int) -> Claim:
        items, dead, drained, last_main, last_ready = await self.broker.scripts.claim(
            keys=[self.main, self.ready, self.heads, self.keyof, self.meta],
            args=[
                self.group, member, limit, int(lease * 1000), max_attempts,
                self.broker.window, self.parked_prefix,
            ],
        )  # fmt: skip
        claimed: list[Claimed] = []
        bodies, due = self.bodies, self._due
        for i in range(0, len(items), 3):
            tag, attempt, body = items[i], int(items[i + 1]), items[i + 2]
            seq = seq_of_tag(tag)
            bodies[seq] = (body, attempt, tag)
            if due:
                due.pop(seq, None)
            claimed.append(Claimed(seq, attempt, body))
        for i in range(0, len(dead), 3):
            seq = seq_of_tag(dead[i])
            attempts = int(dead[i + 1])
            bodies[seq] = (dead[i + 2], attempts, dead[i])
            await self._dead_letter(seq, lease_expired_reason(attempts, ""))
        self.drained = bool(drained)
        if drained and self.watcher is not None:
            self.watcher.arm(_text(last_main), _text(last_ready))
        now = time.time()
        for seq, when in list(due.items()):
            if when < now - self.lease:  # someone else took it long ago
                del due[seq]
        return Claim(claimed, min(self._due.values(), default=None))

    async def ack(self, seq: int) -> None:
        await self._settle(seq, b"", None)

    async def retry(self, member: str, seq: int, delay: float, error: str) -> None:
        delay = min(delay, self.lease)  # a retry waits at most one lease (see the docs)
        letter, entry_id = decode_seq(seq)
        self.bodies.pop(seq, None)
        self._due[seq] = time.time() + delay
        await self.broker.scripts.lease(
            keys=[self.main, self.ready],
            args=[self.group, member, "retry", int((self.lease - delay) * 1000), letter, entry_id],
        )

    async def dead_letter(self, seq: int, reason: str) -> None:
        await self._dead_letter(seq, reason)

    async def _dead_letter(self, seq: int, reason: str) -> None:
        body, attempts, _ = self.bodies.get(seq, (b"", 1, b""))
        try:
            envelope = Envelope.from_json(body)
        except EnvelopeError:
            envelope = unreadable_envelope(self.topic, seq, body)
        stored = envelope.dead_lettered(group=self.group, reason=reason, attempts=attempts)
        await self._settle(seq, stored.to_json(), stored.partitionkey)

    async def release(self, member: str, seqs: list[int]) -> None:
        await self._lease_op(member, "release", int(self.lease * 1000), seqs)

    async def extend(self, member: str, seqs: list[int], lease: float) -> None:
        await self._lease_op(member, "extend", 0, seqs)

    async def _lease_op(self, member: str, mode: str, idle: int, seqs: list[int]) -> None:
        if not seqs:
            return
        args: list[Any] = [self.group, member, mode, idle]
        for seq in seqs:
            args.extend(decode_seq(seq))
            if mode == "release":
                self.bodies.pop(seq, None)
        await self.broker.scripts.lease(keys=[self.main, self.ready], args=args)

    # -- acknowledgements and dead letters, batched per turn of the event loop -----------------

    async def _settle(self, seq: int, dlq_body: bytes, dlq_key: str | None) -> None:
        held = self.bodies.pop(seq, None)
        if held is None:
            letter, entry_id = decode_seq(seq)
            tag = (letter + entry_id).encode()
        else:
            tag = held[2]
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._batch.append(_Settle(tag, dlq_body, dlq_key, done))
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().call_soon(self._start_flush)
        await done

    def _start_flush(self) -> None:
        self._flush_task = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        batch, self._batch = self._batch, []
        self._flushing = False
        acks = [item.tag for item in batch if not item.dlq_body]
        args: list[Any] = [self.group, self.parked_prefix, self.broker.maxlen, self.dlq_topic]
        args.append(len(acks))
        args += acks
        for item in batch:
            if item.dlq_body:
                has_key = item.dlq_key is not None
                args += [item.tag, item.dlq_body, "1" if has_key else "0", item.dlq_key or ""]
        try:
            await self.broker.scripts.settle(
                keys=[
                    self.main, self.ready, self.heads, self.keyof, self.meta, self.dlq,
                    self.broker.keys.registry,
                ],
                args=args,
            )  # fmt: skip
        except Exception as exc:
            for item in batch:
                if not item.done.done():
                    item.done.set_exception(exc)
        else:
            for item in batch:
                if not item.done.done():
                    item.done.set_result(None)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Watcher:
    """Blocks in ``XREAD`` on a group's streams while its member is idle, and wakes it when an
    entry newer than what the group has read arrives."""

    def __init__(self, broker: RedisBroker, streams: tuple[str, str], wake: Any) -> None:
        self.broker = broker
        self.streams = streams
        self.wake = wake
        self._after: tuple[str, str] | None = None
        self._armed = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"lumi-redis-watch-{self.streams[0]}")

    def stopping(self) -> bool:
        return self._stopping

    def arm(self, last_main: str, last_ready: str) -> None:
        self._after = (last_main, last_ready)
        self._armed.set()

    async def _run(self) -> None:
        block_ms = max(1, int(self.broker.options.poll_interval * 1000))
        while not self._stopping:
            await self._armed.wait()
            self._armed.clear()
            if self.stopping():
                return
            after = self._after
            assert after is not None
            try:
                got = await self.broker.blocking.xread(
                    dict(zip(self.streams, after, strict=True)), count=1, block=block_ms
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("waiting for events on %s failed: %s", self.streams[0], exc)
                await asyncio.sleep(self.broker.options.poll_interval)
                got = None
            if got:
                # Positions armed while this read was waiting are older than what it saw: the
                # claim this wakes arms afresh (re-reading from them woke an empty claim).
                self._armed.clear()
                self.wake()

    async def aclose(self) -> None:
        # A flag as well as cancel(): redis-py can swallow a CancelledError during a read.
        self._stopping = True
        self._armed.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class RedisConsumer(LogConsumer):
    """The shared consumer loop, claiming in batches: while handlers are busy, a finishing one
    wakes the loop only once a quarter of the slots are free (or none is left running), so a
    backlog is claimed 8 at a time rather than one claim script per finished handler. When the
    last claim took everything there was, a finishing handler wakes nobody: the watcher does
    when something new arrives (an empty claim per event was half the scripts Redis ran at a
    steady trickle), and a retry this member scheduled does."""

    log: RedisGroup

    async def _handle(self, item: Claimed) -> None:
        try:
            await self._attempt(item)
        except Exception:
            log.exception("recording the outcome of event %d on %s failed", item.seq, self.topic)
        finally:
            inflight = self._inflight
            inflight.pop(item.seq, None)
            if self._closing or item.seq in self.log._due:
                self._kick.set()
            elif not self.log.drained:
                free = self.options.concurrency - len(inflight)
                if not inflight or free * 4 >= self.options.concurrency:
                    self._kick.set()
