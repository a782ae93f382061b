"""Kafka subscriptions: a member of a consumer group, and an ephemeral reader.

A member (:class:`GroupMember`) is one librdkafka consumer in the Kafka group
``<prefix><group>.<topic>``, subscribed to the topic and to the group's replay topic
``<topic>.<group>.replay`` (where :meth:`KafkaBroker.replay` sends dead letters, so only this
group gets them again). Messages go to a :class:`KeyedRunner`; an offset is committed once it
and every offset before it in its partition were handled — commits never run ahead of handlers,
so a member that dies leaves its unfinished events to the next owner of the partition.

A new group starts at the earliest offset, or with ``start="latest"`` at the partitions' ends
as they were at ``subscribe``; those starting offsets are committed when the partitions are
first assigned, so a group that leaves before handling anything still resumes there.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import confluent_kafka as ck

from lumi.brokers._cloudevents import STRUCTURED_CONTENT_TYPE, decode, header_map
from lumi.brokers._kafka_client import ConsumerThread
from lumi.brokers._keyed import Inbound, KeyedRunner, Settlement
from lumi.brokers.base import Delivery, DeliveryHandler, Subscription
from lumi.model.envelope import Envelope
from lumi.model.errors import Unavailable

if TYPE_CHECKING:
    from lumi.brokers.kafka import KafkaBroker

log = logging.getLogger("lumi.brokers.kafka")

MARKER = "lumi-dead-letter"  # header of a record saying a dead letter was replayed
PREFIX = "ce_"


def replay_topic(topic: str, group: str) -> str:
    """Where replayed dead letters of ``group`` go: ``<topic>.<group>.replay``."""
    return f"{topic}.{group}.replay"


class _Partition:
    """Offsets of one partition taken and not yet handled; what may be committed."""

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.active = True
        self._order: collections.deque[int] = collections.deque()
        self._done: set[int] = set()
        self.point: int | None = None  # the offset to commit: everything before it is handled

    def add(self, offset: int) -> None:
        self._order.append(offset)

    def finish(self, offset: int) -> bool:
        """Mark ``offset`` handled; True if the commit point moved."""
        order = self._order
        if order and order[0] == offset and not self._done:
            order.popleft()  # the usual case: handled in the order taken
            self.point = offset + 1
            return True
        self._done.add(offset)
        moved = False
        while self._order and self._order[0] in self._done:
            self._done.discard(self._order[0])
            self.point = self._order.popleft() + 1
            moved = True
        return moved


_SPECVERSION = PREFIX + "specversion"
_PLAIN_HEADERS = [("content-type", STRUCTURED_CONTENT_TYPE.encode())]  # as the record has them
_STRUCTURED = {"content-type": STRUCTURED_CONTENT_TYPE}  # read only


def _headers(pairs: list[tuple[str, bytes]] | None) -> dict[str, str]:
    """A record's headers as text; the structured-mode event Lumi writes without
    traceparent or correlation id (the usual record) costs no decoding."""
    if not pairs:
        return {}
    if pairs == _PLAIN_HEADERS:
        return dict(_STRUCTURED)
    return header_map(pairs)


class GroupMember(Subscription, Settlement):
    """One member of a group consuming one topic (see the module docstring)."""

    def __init__(
        self,
        broker: KafkaBroker,
        topic: str,
        group: str,
        handler: DeliveryHandler,
        *,
        max_attempts: int,
        start: str,
    ) -> None:
        self.broker = broker
        self.topic = topic
        self.group = group
        self.start = start
        self.replay = replay_topic(topic, group)
        self.runner = KeyedRunner(
            handler,
            self,
            topic=topic,
            group=group,
            max_attempts=max_attempts,
            backoff=broker.backoff,
            concurrency=broker.concurrency,
        )
        self.runner.source = self._pull().__next__
        self._backlog: collections.deque[Any] = collections.deque()  # received, not decoded
        self._partitions: dict[tuple[str, int], _Partition] = {}
        self._name = broker.name_of(topic)  # the topic's name in Kafka
        self._by_partition: dict[int, _Partition] = {}  # its partitions (not the replay topic's)
        self._ends: dict[int, int] = {}
        self._assigned = asyncio.Event()
        self._paused = False
        self._moved: set[_Partition] = set()  # commit points moved in this turn of the loop
        self._thread: ConsumerThread | None = None
        self._closed = False

    async def begin(self) -> None:
        """Join the group; returns once this member has its first assignment."""
        broker = self.broker
        await broker.ensure_topic(self.topic)
        await broker.ensure_topic(self.replay, partitions=1)
        if self.start == "latest":
            self._ends = await broker.end_offsets(self.topic)
        config = {
            **broker.consumer_config,
            "group.id": broker.group_id(self.group, self.topic),
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
        }
        loop = asyncio.get_running_loop()
        consumer = broker.new_client(ck.Consumer, config)
        self._thread = ConsumerThread(
            consumer, loop, self._on_messages, name=f"lumi-kafka-{self.group}-{self.topic}"
        )
        topics = [broker.name_of(self.topic), broker.name_of(self.replay)]
        self._thread.start(
            lambda c: c.subscribe(
                topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
            )
        )
        try:
            await asyncio.wait_for(self._assigned.wait(), broker.join_timeout)
        except TimeoutError:
            await self.aclose()
            raise Unavailable(
                f"joining Kafka consumer group {config['group.id']!r} took over "
                f"{broker.join_timeout:.0f}s"
            ) from None

    # -- in the consumer thread ----------------------------------------------------------------

    def _on_assign(self, consumer: ck.Consumer, partitions: list[ck.TopicPartition]) -> None:
        chosen, first_commit = partitions, []
        try:
            chosen = []
            for tp in consumer.committed(partitions, timeout=self.broker.join_timeout):
                if tp.offset >= 0:
                    chosen.append(ck.TopicPartition(tp.topic, tp.partition))
                    continue
                end = self._ends.get(tp.partition)
                if tp.topic == self.broker.name_of(self.topic) and end is not None:
                    chosen.append(ck.TopicPartition(tp.topic, tp.partition, end))
                    first_commit.append(ck.TopicPartition(tp.topic, tp.partition, end))
                else:
                    chosen.append(ck.TopicPartition(tp.topic, tp.partition, ck.OFFSET_BEGINNING))
        except ck.KafkaException as exc:
            log.warning("reading committed offsets of %s failed: %s", self.topic, exc)
            chosen = partitions
        consumer.assign(chosen)
        if first_commit:
            consumer.commit(offsets=first_commit, asynchronous=False)
        keys = [(tp.topic, tp.partition) for tp in chosen]
        self.broker.loop.call_soon_threadsafe(self._took, keys)

    def _on_revoke(self, consumer: ck.Consumer, partitions: list[ck.TopicPartition]) -> None:
        keys = {(tp.topic, tp.partition) for tp in partitions}
        assert self._thread is not None
        points: dict[tuple[str, int], int] = {}
        if not self._thread.stopping:
            future = asyncio.run_coroutine_threadsafe(self._give_up(keys), self.broker.loop)
            try:
                points = future.result(timeout=self.broker.drain_timeout + 10)
            except Exception:
                log.exception("handing over partitions of %s failed", self.topic)
        queued = self._thread.take_commits(keys)
        self._thread.commit_now({**queued, **points}, sync=True)

    def _on_lost(self, consumer: ck.Consumer, partitions: list[ck.TopicPartition]) -> None:
        keys = {(tp.topic, tp.partition) for tp in partitions}
        assert self._thread is not None
        self._thread.take_commits(keys)  # no longer ours: committing would fail
        asyncio.run_coroutine_threadsafe(self._give_up(keys), self.broker.loop)

    # -- on the event loop ---------------------------------------------------------------------

    def _took(self, keys: list[tuple[str, int]]) -> None:
        for key in keys:
            part = self._partitions[key] = _Partition(*key)
            if part.topic == self._name:
                self._by_partition[part.partition] = part
        self._assigned.set()

    async def _give_up(self, keys: set[tuple[str, int]]) -> dict[tuple[str, int], int]:
        gone = [self._partitions.pop(key) for key in keys if key in self._partitions]
        for part in gone:
            part.active = False
            if self._by_partition.get(part.partition) is part:
                del self._by_partition[part.partition]
        if self._backlog:  # never handed out: the next owner of the partition reads them
            kept = [m for m in self._backlog if (m.topic(), m.partition()) not in keys]
            self._backlog.clear()  # in place: the source holds the deque
            self._backlog.extend(kept)
        if gone:
            await self.runner.drop(lambda i: i.token in gone, self.broker.drain_timeout)
            if self._paused:  # the backlog shrank: resume reading if there is room
                self._resume_if_room()
        return {(p.topic, p.partition): p.point for p in gone if p.point is not None}

    def _on_messages(self, messages: list[Any]) -> None:
        self._backlog.extend(messages)
        if not self._closed:
            self.runner.wake()
        if self._waiting() >= self.broker.window and not self._paused and self._thread:
            self._paused = True
            self._thread.pause()

    def _waiting(self) -> int:
        return self.runner.size + len(self._backlog)

    def _resume_if_room(self) -> None:
        if self._waiting() <= self.broker.window // 2 and self._thread:
            self._paused = False
            self._thread.resume()

    def _pull(self) -> Iterator[Inbound | None]:
        """The runner's source, as a generator each call of the source resumes: the next
        keyless event of the backlog, decoded; keyed ones are submitted to the runner (it keeps
        their order), undecodable ones too (it dead-letters them), and records that are not
        events are finished here.

        Records wait in the backlog undecoded rather than in the runner: an event lives from
        decoding to settling, and while few live at once most die young, which is what keeps
        Python's garbage collector cheap (a backlog of decoded events made it a third of the
        loop's time in bench/broker_bench.py). This is the loop's share of every record: a
        generator, because resuming one costs a fraction of a function call and its locals are
        read once, not per record (bench/kafka_consume_cost.py under callgrind); it calls no
        helpers beyond decoding, and never ends.
        """
        backlog, partitions, topic, group = self._backlog, self._partitions, self.topic, self.group
        runner, ready = self.runner, self.runner._ready
        name, by_partition = self._name, self._by_partition  # most records: no key tuple
        while True:  # one turn per call of the source
            found = None
            if self._paused:
                self._resume_if_room()
            while backlog and not self._closed:  # closed: the runner gives back what it has
                msg = backlog.popleft()
                err = msg.error()
                if err is not None:
                    if err.code() != ck.KafkaError.UNKNOWN_TOPIC_OR_PART:
                        log.warning("consuming %s for %s: %s", topic, group, err)
                    continue
                record_topic = msg.topic()
                if record_topic == name:
                    part = by_partition.get(msg.partition())
                else:  # the replay topic
                    part = partitions.get((record_topic, msg.partition()))
                if part is None:
                    continue  # revoked meanwhile: its next owner reads it again
                offset = msg.offset()
                part._order.append(offset)  # part.add(offset), inlined
                pairs = msg.headers()
                headers = _STRUCTURED if pairs == _PLAIN_HEADERS else _headers(pairs)
                body = msg.value()
                if body is None or MARKER in headers:
                    self._finished(part, offset)  # a tombstone or a replay marker: not an event
                    continue
                try:
                    if _SPECVERSION in headers:
                        envelope: Envelope | None = decode(body, headers, prefix=PREFIX)
                    else:
                        envelope = Envelope.from_json(body)
                    error = ""
                except Exception as exc:  # EnvelopeError, or a bug: never the generator's end
                    envelope, error = None, str(exc)
                # A replayed event is delivered under its own topic's name.
                item = Inbound(part, envelope, body, error, 0, topic, group, offset)
                if item.key is None and envelope is not None:
                    found = item
                    break
                runner.submit(item)
                if ready:
                    break  # the worker takes it from the runner
            yield found

    def _finished(self, part: _Partition, offset: int) -> None:
        if part.finish(offset) and part.active:
            # Commit points that moved in this turn of the loop go to the consumer thread
            # together (one lock, not one per event).
            if not self._moved:
                self.broker.loop.call_soon(self._hand_commits)
            self._moved.add(part)

    def _hand_commits(self) -> None:
        moved, self._moved = self._moved, set()
        if self._thread is None:
            return
        for part in moved:
            if part.active and part.point is not None:
                self._thread.commit(part.topic, part.partition, part.point)

    # -- Settlement ----------------------------------------------------------------------------

    async def ack(self, item: Inbound) -> None:
        self.ack_now(item)

    def ack_now(self, item: Inbound) -> None:
        part, offset = item.token, item.seq
        order = part._order
        if order and order[0] == offset and not part._done and part.active:
            # _finished's usual case inline (handled in the order taken): one call per event
            order.popleft()
            part.point = offset + 1
            if not self._moved:
                self.broker.loop.call_soon(self._hand_commits)
            self._moved.add(part)
            return
        self._finished(part, offset)

    async def dead_letter(self, item: Inbound, stored: Envelope) -> None:
        await self.broker.store_dead_letter(self.topic, self.group, stored)

    async def aclose(self) -> None:
        """Let running handlers finish, commit, and leave the group."""
        if self._closed:
            return
        self._closed = True
        await self.runner.stop(self.broker.drain_timeout)
        if self._thread is not None:
            for part in self._partitions.values():
                if part.point is not None:
                    self._thread.commit(part.topic, part.partition, part.point)
            await self._thread.stop()
        self.broker.forget(self)


class Reader(Subscription):
    """An ephemeral reader (``group=None``): follows every partition from where ``start``
    says, commits nothing, does not retry (a failing handler is logged)."""

    def __init__(self, broker: KafkaBroker, topic: str, handler: DeliveryHandler) -> None:
        self.broker = broker
        self.topic = topic
        self.handler = handler
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._thread: ConsumerThread | None = None
        self._task: asyncio.Task[None] | None = None
        self._paused = False

    async def begin(self, start: str) -> None:
        broker = self.broker
        await broker.ensure_topic(self.topic)
        name = broker.name_of(self.topic)
        if start == "latest":
            offsets = await broker.end_offsets(self.topic)
        else:
            offsets = {p: ck.OFFSET_BEGINNING for p in await broker.partitions_of(self.topic)}
        config = {**broker.consumer_config, "group.id": "lumi-reader", "enable.auto.commit": False}
        self._thread = ConsumerThread(
            broker.new_client(ck.Consumer, config),
            broker.loop,
            self._on_messages,
            name=f"lumi-kafka-reader-{self.topic}",
        )
        assignment = [ck.TopicPartition(name, p, o) for p, o in sorted(offsets.items())]
        self._thread.start(lambda consumer: consumer.assign(assignment))
        self._task = asyncio.create_task(self._run(), name=f"lumi-kafka-read-{self.topic}")

    def _on_messages(self, messages: list[Any]) -> None:
        for msg in messages:
            if msg.error() is None and msg.value() is not None:
                self._queue.put_nowait(msg)
        if self._queue.qsize() > self.broker.window and not self._paused and self._thread:
            self._paused = True
            self._thread.pause()

    async def _run(self) -> None:
        while True:
            msg = await self._queue.get()
            try:
                envelope = decode(msg.value(), header_map(msg.headers()), prefix=PREFIX)
                await self.handler(Delivery(self.topic, None, envelope, 1))
            except Exception:
                log.exception("a reader of %s failed on the record at %d", self.topic, msg.offset())
            if self._paused and self._queue.qsize() < self.broker.window // 2 and self._thread:
                self._paused = False
                self._thread.resume()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._thread is not None:
            await self._thread.stop()
            self._thread = None
        self.broker.forget(self)
