"""One consumer group of the Redis broker, as the shared consumer loop sees it (a GroupLog).

The state lives in Redis (:mod:`._redis_scripts` explains it). A member reads new events with a
blocking ``XREADGROUP`` on a connection of its own (so publishes and acknowledgements never wait
behind it): an entry without a key is handled straight from the reply, keyed ones after one
``ORDER`` script call. ``claim`` (the ``CLAIM`` script) only takes over expired leases — dead
members' events, due retries — and runs once per poll interval or when a retry falls due.
Acknowledgements that fall due in the same turn of the event loop are sent together: one bare
``XACK`` for unkeyed topic entries, one ``settle`` script call for the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any

from lumi.brokers.base import DeliveryHandler, dead_letter_topic
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
    import redis.asyncio as aioredis

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
    plain: bool
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
        self._ready_bytes = self.ready.encode()
        self.dlq_topic = dead_letter_topic(topic, group)
        self.dlq = keys.stream(self.dlq_topic)
        self.lease = broker.options.lease
        # in flight: body, attempt, tag, plain (an unkeyed topic entry: settled by a bare XACK)
        self.bodies: dict[int, tuple[bytes, int, bytes, bool]] = {}
        self.parked = 0  # events parked in the group, as the last script saw it
        self._due: dict[int, float] = {}  # retries this member scheduled: when they fall due
        self._batch: list[_Settle] = []
        self._flushing = False
        self._flush_task: asyncio.Task[None] | None = None

    async def claim(self, member: str, limit: int, lease: float, max_attempts: int) -> Claim:
        items, dead, parked = await self.broker.scripts.claim(
            keys=[self.main, self.ready, self.heads, self.keyof, self.meta],
            args=[
                self.group, member, limit, int(lease * 1000), max_attempts, self.parked_prefix,
            ],
        )  # fmt: skip
        self.parked = int(parked)
        claimed: list[Claimed] = []
        bodies, due = self.bodies, self._due
        for i in range(0, len(items), 4):
            tag, attempt, body = items[i], int(items[i + 1]), items[i + 2]
            seq = seq_of_tag(tag)
            bodies[seq] = (body, attempt, tag, items[i + 3] == 1)
            if due:
                due.pop(seq, None)
            claimed.append(Claimed(seq, attempt, body))
        for i in range(0, len(dead), 4):
            seq = seq_of_tag(dead[i])
            attempts = int(dead[i + 1])
            bodies[seq] = (dead[i + 2], attempts, dead[i], False)
            await self._dead_letter(seq, lease_expired_reason(attempts, ""))
        now = time.time()
        for seq, when in list(due.items()):
            if when < now - self.lease:  # someone else took it long ago
                del due[seq]
        return Claim(claimed, self.next_due())

    def next_due(self) -> float | None:
        """When the earliest retry this member scheduled falls due (``time.time()``), if any."""
        return min(self._due.values(), default=None)

    async def read(
        self, reader: aioredis.Redis, member: str, count: int, block_ms: int
    ) -> list[Claimed]:
        """New entries for ``member``, waiting up to ``block_ms`` for some: the ready stream's
        (promoted and replayed events) and, unless too much is parked, the topic's. At most
        ``count`` from each stream."""
        streams: dict[Any, Any] = {self.ready: ">"}
        if self.parked < self.broker.window:
            streams[self.main] = ">"
        reply: Any = await reader.xreadgroup(
            self.group, member, streams, count=count, block=block_ms
        )
        claimed: list[Claimed] = []
        keyed: list[tuple[Claimed, bytes, bytes]] = []
        bodies = self.bodies
        for stream, entries in reply or ():
            ready = stream == self._ready_bytes
            letter = b"r" if ready else b"m"
            for entry_id, fields in entries:
                body = fields.get(b"event", b"")
                key = fields.get(b"key")
                tag = letter + entry_id
                item = Claimed(seq_of_tag(tag), 1, body)
                if key is None or ready:  # a ready entry is its key's head already
                    bodies[item.seq] = (body, 1, tag, not ready and key is None)
                    claimed.append(item)
                else:
                    keyed.append((item, tag, key))
        if keyed:
            args: list[Any] = [self.group, self.parked_prefix, keyed[-1][1][1:]]
            for _, tag, key in keyed:
                args += [tag, key]
            flags, parked = await self.broker.scripts.order(
                keys=[self.main, self.heads, self.keyof, self.meta], args=args
            )
            self.parked = int(parked)
            for (item, tag, _), flag in zip(keyed, flags, strict=True):
                if flag == 1:
                    bodies[item.seq] = (item.body, 1, tag, False)
                    claimed.append(item)
        return claimed

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
        body, attempts, _, _ = self.bodies.get(seq, (b"", 1, b"", False))
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
        plain = False
        if held is None:
            letter, entry_id = decode_seq(seq)
            tag = (letter + entry_id).encode()
        else:
            tag, plain = held[2], held[3] and not dlq_body
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._batch.append(_Settle(tag, dlq_body, dlq_key, plain, done))
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().call_soon(self._start_flush)
        await done

    def _start_flush(self) -> None:
        self._flush_task = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        batch, self._batch = self._batch, []
        self._flushing = False
        plain = [item.tag[1:] for item in batch if item.plain]
        rest = [item for item in batch if not item.plain]
        try:
            if plain:
                await self.broker.client.xack(self.main, self.group, *plain)
            if rest:
                await self._settle_script(rest)
        except Exception as exc:
            for item in batch:
                if not item.done.done():
                    item.done.set_exception(exc)
        else:
            for item in batch:
                if not item.done.done():
                    item.done.set_result(None)

    async def _settle_script(self, batch: list[_Settle]) -> None:
        acks = [item.tag for item in batch if not item.dlq_body]
        args: list[Any] = [self.group, self.parked_prefix, self.broker.maxlen, self.dlq_topic]
        args.append(len(acks))
        args += acks
        for item in batch:
            if item.dlq_body:
                has_key = item.dlq_key is not None
                args += [item.tag, item.dlq_body, "1" if has_key else "0", item.dlq_key or ""]
        await self.broker.scripts.settle(
            keys=[
                self.main, self.ready, self.heads, self.keyof, self.meta, self.dlq,
                self.broker.keys.registry,
            ],
            args=args,
        )  # fmt: skip


class RedisConsumer(LogConsumer):
    """One member of a group: blocks in ``XREADGROUP`` on a connection of its own, claims
    expired leases once per poll interval (or when a retry of its own falls due), and runs a
    task per event, at most ``concurrency`` at once (two reads' worth when both the topic and
    the ready stream answer one read)."""

    log: RedisGroup

    def __init__(self, group_log: RedisGroup, handler: DeliveryHandler, **kwargs: Any) -> None:
        super().__init__(group_log, handler, **kwargs)
        self._reader: aioredis.Redis | None = None

    def start(self) -> None:
        # A connection of its own: a blocked read must not hold up publishes or settlements.
        self._reader = self.log.broker.reader()
        super().start()

    async def _run(self) -> None:
        opts, group = self.options, self.log
        reader = self._reader
        assert reader is not None
        claim_at = 0.0  # time.time() of the next claim of expired leases
        while not self._closing:
            free = opts.concurrency - len(self._inflight)
            self._kick.clear()
            if free <= 0:  # a finishing handler kicks
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._kick.wait(), opts.poll_interval)
                continue
            now = time.time()
            due = group.next_due()
            if now >= claim_at or (due is not None and now >= due):
                claim_at = now + opts.poll_interval
                items = await self._guarded(
                    group.claim(self.member, free, opts.lease, self.max_attempts), "claiming"
                )
                self._spawn(items)
                continue
            wait = min(claim_at, due if due is not None else claim_at) - now
            items = await self._guarded(
                group.read(reader, self.member, free, max(1, int(wait * 1000))), "reading"
            )
            self._spawn(items)

    async def _guarded(self, work: Any, what: str) -> list[Claimed]:
        try:
            got = await work
        except Exception:
            log.exception("%s events of %s for %s failed", what, self.topic, self.group)
            await asyncio.sleep(self.options.poll_interval)
            return []
        return got.items if isinstance(got, Claim) else list(got)

    def _spawn(self, items: list[Claimed]) -> None:
        inflight = self._inflight
        for item in items:
            inflight[item.seq] = asyncio.create_task(self._handle(item))

    async def _handle(self, item: Claimed) -> None:
        try:
            await self._attempt(item)
        except Exception:
            log.exception("recording the outcome of event %d on %s failed", item.seq, self.topic)
        finally:
            inflight = self._inflight
            inflight.pop(item.seq, None)
            if len(inflight) == self.options.concurrency - 1 or self._closing:
                self._kick.set()  # the loop may be waiting for a free slot

    async def _stop_loop(self) -> None:
        # A read blocked in Redis ends within a poll interval (its longest block); if the
        # server does not answer, cancel it rather than hang the close.
        if self._loop_task is None:
            return
        try:
            await asyncio.wait_for(
                asyncio.shield(self._loop_task), self.options.poll_interval + 2.0
            )
        except TimeoutError:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task

    async def aclose(self) -> None:
        await super().aclose()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader.aclose()
