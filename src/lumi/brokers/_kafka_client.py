"""The threads and blocking calls behind the Kafka broker (confluent-kafka is a blocking API).

* :class:`ProducerThread` serves the producer's delivery reports: one thread calls ``poll``,
  collects the reports of each call and hands them to the event loop in one callback, so a
  batch of N events costs one wake-up of the loop, not N.
* :class:`ConsumerThread` owns one consumer (librdkafka consumers must not be used from two
  threads): it polls, hands batches of messages to the loop, runs the rebalance callbacks, and
  applies the commits the loop asks for between polls. When the loop is behind it stops
  polling for up to :data:`HOLD` seconds, and only then pauses the partitions: librdkafka drops
  what it prefetched for a paused partition, so pausing at every full window would refetch
  it each time (measured: half the throughput), while never polling for long would miss
  rebalances.
* :func:`end_offsets` and :func:`read_topic` are blocking reads for a thread pool.

Ends of partitions are taken from a fetch (the end-of-partition event), not from ListOffsets:
tansu, the Kafka-compatible broker the tests run on, answers ListOffsets(latest) with the base
offset of the last record batch plus one, which undercounts after any batch of several records.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import confluent_kafka as ck

log = logging.getLogger("lumi.brokers.kafka")

Report = tuple[Any, "ck.KafkaError | None"]
HOLD = 1.0  # seconds the thread waits for the loop to catch up before pausing the partitions


class ProducerThread:
    """Polls ``producer`` in a thread; ``on_reports`` runs on ``loop`` with each poll's reports
    as (the ``opaque`` given to :meth:`callback`, error or None) pairs."""

    def __init__(
        self,
        producer: ck.Producer,
        loop: asyncio.AbstractEventLoop,
        on_reports: Callable[[list[Report]], None],
    ) -> None:
        self.producer = producer
        self.loop = loop
        self.on_reports = on_reports
        self._reports: list[Report] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lumi-kafka-producer", daemon=True)
        self._thread.start()

    def callback(self, opaque: Any) -> Callable[[ck.KafkaError | None, Any], None]:
        """An ``on_delivery`` for one produce call (runs in this thread, inside ``poll``)."""
        reports = self._reports

        def delivered(err: ck.KafkaError | None, msg: Any) -> None:
            reports.append((opaque, err))

        return delivered

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.producer.poll(0.1)
            except Exception:
                log.exception("polling the Kafka producer failed")
                time.sleep(0.1)
            self._hand_over()

    def _hand_over(self) -> None:
        if self._reports:
            reports, self._reports[:] = list(self._reports), []
            with contextlib.suppress(RuntimeError):  # the loop is closed
                self.loop.call_soon_threadsafe(self.on_reports, reports)

    def close(self, timeout: float) -> None:
        """Wait for outstanding deliveries (up to ``timeout``), then stop the thread."""
        self._stop.set()
        self._thread.join()
        self.producer.flush(timeout)
        self._hand_over()


class ConsumerThread:
    """Runs ``consumer`` in its own thread. ``on_messages`` (on the loop) gets each batch; the
    rebalance callbacks run in this thread, and :meth:`commit`, :meth:`pause`, :meth:`resume`
    and :meth:`stop` may be called from the loop at any time (see the module docstring)."""

    def __init__(
        self,
        consumer: ck.Consumer,
        loop: asyncio.AbstractEventLoop,
        on_messages: Callable[[list[Any]], None],
        *,
        name: str,
        batch: int = 500,
    ) -> None:
        self.consumer = consumer
        self.loop = loop
        self.on_messages = on_messages
        self.batch = batch
        self.stopping = False
        self._lock = threading.Lock()
        self._commits: dict[tuple[str, int], int] = {}
        self._room = threading.Event()  # clear: the loop is behind, hold back
        self._room.set()
        self._setup: Callable[[ck.Consumer], None] = lambda consumer: None
        self._done: asyncio.Future[None] = loop.create_future()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self, setup: Callable[[ck.Consumer], None]) -> None:
        """Start the thread; it calls ``setup(consumer)`` (subscribe or assign) first."""
        self._setup = setup
        self._thread.start()

    def commit(self, topic: str, partition: int, offset: int) -> None:
        with self._lock:
            self._commits[topic, partition] = offset

    def take_commits(self, keys: set[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Remove and return the queued commits of ``keys`` (a rebalance commits them now)."""
        with self._lock:
            return {key: self._commits.pop(key) for key in list(self._commits) if key in keys}

    def pause(self) -> None:
        """The loop is behind: hand over nothing more until :meth:`resume`."""
        self._room.clear()

    def resume(self) -> None:
        self._room.set()

    def _run(self) -> None:
        try:
            self._setup(self.consumer)
            paused: list[Any] = []
            while not self.stopping:
                self.commit_queued(sync=False)
                if not self._room.is_set() and not paused:
                    if self._room.wait(HOLD):
                        continue
                    paused = self.consumer.assignment()
                    if paused:
                        self.consumer.pause(paused)  # keeps polling for rebalances
                elif self._room.is_set() and paused:
                    self.consumer.resume(paused)
                    paused = []
                msg = self.consumer.poll(0.1)
                if msg is None:
                    continue
                batch = [msg, *self.consumer.consume(self.batch - 1, 0)]
                self.loop.call_soon_threadsafe(self.on_messages, batch)
        except Exception:
            log.exception("the Kafka consumer thread %s failed", self._thread.name)
        finally:
            try:
                self.commit_queued(sync=True)
                self.consumer.close()
            except Exception:
                log.exception("closing the Kafka consumer %s failed", self._thread.name)
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(_resolve, self._done)

    def commit_queued(self, *, sync: bool) -> None:
        with self._lock:
            commits, self._commits = self._commits, {}
        self.commit_now(commits, sync=sync)

    def commit_now(self, commits: dict[tuple[str, int], int], *, sync: bool) -> None:
        """Commit ``commits`` (call only in this thread)."""
        if not commits:
            return
        offsets = [ck.TopicPartition(t, p, o) for (t, p), o in commits.items()]
        try:
            if sync:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            else:
                self.consumer.commit(offsets=offsets, asynchronous=True)
        except ck.KafkaException as exc:
            # Not fatal: the events are delivered again (at-least-once) to whoever owns them.
            log.warning("committing offsets on %s failed: %s", self._thread.name, exc)

    async def stop(self) -> None:
        """Stop polling, commit what is queued, close the consumer (leaving its group)."""
        self.stopping = True
        self._room.set()
        if self._thread.ident is not None:  # started
            await self._done


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def end_offsets(config: dict[str, Any], topic: str, timeout: float) -> dict[int, int]:
    """The offset the next record of each partition of ``topic`` will get (blocking)."""
    found: dict[int, int] = {}
    with _reader(config) as consumer:
        partitions = _partitions(consumer, topic, timeout)
        if not partitions:
            return found
        consumer.assign([ck.TopicPartition(topic, p, ck.OFFSET_END) for p in partitions])
        seen: dict[int, int] = {}
        deadline = time.monotonic() + timeout
        while len(found) < len(partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading the end offsets of {topic} took over {timeout}s")
            msg = consumer.poll(0.1)
            if msg is None:
                continue
            err = msg.error()
            if err is None:
                seen[msg.partition()] = msg.offset() + 1
            elif err.code() == ck.KafkaError._PARTITION_EOF:
                found[msg.partition()] = max(msg.offset(), seen.get(msg.partition(), 0))
    return found


def read_topic(config: dict[str, Any], topic: str, timeout: float) -> list[Any]:
    """Every record of ``topic`` from the start to its current end (blocking)."""
    records: list[Any] = []
    with _reader(config) as consumer:
        partitions = _partitions(consumer, topic, timeout)
        if not partitions:
            return records
        consumer.assign([ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING) for p in partitions])
        ended: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(ended) < len(partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} took over {timeout}s")
            msg = consumer.poll(0.1)
            if msg is None:
                continue
            err = msg.error()
            if err is None:
                records.append(msg)
            elif err.code() == ck.KafkaError._PARTITION_EOF:
                ended.add(msg.partition())
    return records


@contextlib.contextmanager
def _reader(config: dict[str, Any]) -> Any:
    consumer = ck.Consumer(
        {
            **config,
            "group.id": "lumi-reader",  # required by the client; never joined or committed
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        yield consumer
    finally:
        consumer.close()


def _partitions(consumer: ck.Consumer, topic: str, timeout: float) -> list[int]:
    metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
    if metadata is None or metadata.error is not None:
        return []
    return sorted(metadata.partitions)
