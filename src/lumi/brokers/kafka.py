"""The Kafka broker: events on Apache Kafka (or any broker speaking its protocol).

``events = "kafka://host1:9092,host2:9092?partitions=6&acks=all"`` (options: see
:mod:`._kafka_config` and docs/events.md). How the contract maps onto Kafka:

* A topic per event, ``<prefix><service>.<event>``, created on first use with ``partitions``
  partitions when the cluster allows it. The partition key is the Kafka record key, so events
  with one key share a partition and keep their order; keyless events of one publish go to one
  partition, the next publish to the next one.
* Publishing waits for the acknowledgement of every in-sync replica (``acks=all``) through the
  idempotent producer, so a retried send is stored once. CloudEvents go in structured mode
  (the JSON envelope as the value) or, with ``mode=binary``, in binary mode (``ce_*`` headers,
  ``data`` as the value); ``traceparent`` and ``x-correlation-id`` are headers in both.
* A subscribing service is a consumer group (see :mod:`._kafka_consumer`); offsets are committed
  only after the handler succeeded; retries wait the backoff in the member (so a key's order
  holds); dead letters go to the topic ``<topic>.<group>.dlq`` (one partition, the event id as
  key) and replays to ``<topic>.<group>.replay``, which only that group reads. Kafka cannot
  delete a record, so a replay appends a marker (header ``lumi-dead-letter: replayed``) to the
  dead-letter topic that :meth:`KafkaBroker.dead_letters` and Lumi consumers skip.

Why confluent-kafka and not aiokafka: both were measured against the same broker (tansu) with
``bench/broker_bench.py --broker kafka --peers`` and publish at about the same rate (within the
noise of this machine), but only confluent-kafka's idempotent producer works there, and its
configuration is librdkafka's, so Kafka's documented property names pass straight through.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import confluent_kafka as ck
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from lumi.brokers import _kafka_client as client
from lumi.brokers._cloudevents import STRUCTURED_CONTENT_TYPE, decode, encode, header_map
from lumi.brokers._kafka_config import group_id, parse_url, producer_defaults, role_config
from lumi.brokers._kafka_consumer import MARKER, PREFIX, GroupMember, Reader, replay_topic
from lumi.brokers._options import is_secret
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
from lumi.model.envelope import Envelope, EnvelopeError, now_rfc3339
from lumi.model.errors import ConfigError, Unavailable

log = logging.getLogger("lumi.brokers.kafka")

Record = tuple[bytes | None, bytes, dict[str, str], int]  # key, value, headers, partition
_NOT_FATAL = frozenset(
    {
        ck.KafkaError.TOPIC_ALREADY_EXISTS,
        ck.KafkaError.TOPIC_AUTHORIZATION_FAILED,
        ck.KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        ck.KafkaError.POLICY_VIOLATION,
    }
)


class _Batch:
    """The delivery reports of one publish, resolved when the last one arrives."""

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int, topic: str) -> None:
        self.future: asyncio.Future[None] = loop.create_future()
        self.remaining = count
        self.topic = topic
        self.error: ck.KafkaError | None = None

    def report(self, err: ck.KafkaError | None) -> None:
        self.remaining -= 1
        if err is not None and self.error is None:
            self.error = err
        if self.remaining == 0 and not self.future.done():
            if self.error is None:
                self.future.set_result(None)
            else:
                problem = f"publishing to Kafka topic {self.topic} failed: {self.error.str()}"
                self.future.set_exception(Unavailable(problem))


class KafkaBroker(Broker):
    """Events on Kafka; see the module docstring for how the contract maps onto it."""

    name = "kafka"
    loop: asyncio.AbstractEventLoop  # the loop the broker was started on

    def __init__(
        self,
        servers: str | Sequence[str],
        *,
        config: dict[str, Any] | None = None,
        partitions: int = 3,
        replication_factor: int = -1,
        create_topics: bool = True,
        mode: str = "structured",
        prefix: str = "",
        backoff: Backoff | None = None,
        concurrency: int = 32,
        window: int = 1000,
        drain_timeout: float = 30.0,
        join_timeout: float = 60.0,
        timeout: float = 30.0,
    ) -> None:
        super().__init__()
        hosts = [servers] if isinstance(servers, str) else list(servers)
        self.servers = ",".join(hosts)
        self.partitions = partitions
        self.replication_factor = replication_factor
        self.create_topics = create_topics
        self.mode = mode
        self.prefix = prefix
        self.backoff = backoff or Backoff(initial=0.2, maximum=60.0)
        self.concurrency = concurrency
        self.window = window
        self.drain_timeout = drain_timeout
        self.join_timeout = join_timeout
        self.timeout = timeout
        self._common: dict[str, Any] = {
            **(config or {}),
            "bootstrap.servers": self.servers,
            "error_cb": self._client_error,
            "logger": logging.getLogger("lumi.brokers.kafka.librdkafka"),
        }
        self.consumer_config = role_config(self._common, "consumer")
        self._secrets = [str(v) for k, v in self._common.items() if is_secret(k) and v]
        self._producer: ck.Producer | None = None
        self._admin: AdminClient | None = None
        self._producer_thread: client.ProducerThread | None = None
        self._counts: dict[str, int] = {}  # topic → partitions, for the topics known to exist
        self._topic_locks: dict[str, asyncio.Lock] = {}
        self._next = itertools.count()
        self._subscriptions: list[GroupMember | Reader] = []
        self._closed = False

    @classmethod
    def from_url(cls, url: str, *, app_dir: Path, **options: Any) -> KafkaBroker:
        """``kafka://host:port[,host:port...][?option=value&...]`` (``app_dir`` is unused)."""
        servers, config, lumi = parse_url(url)
        config.update(options.pop("config", {}))
        return cls(servers, config=config, **{**lumi, **options})

    # -- clients -------------------------------------------------------------------------------

    def new_client(self, cls: Any, config: dict[str, Any]) -> Any:
        """A confluent-kafka client; a configuration librdkafka refuses is a ConfigError."""
        try:
            return cls(config)
        except (ck.KafkaException, ValueError, TypeError) as exc:
            text = str(exc.args[0].str() if isinstance(exc, ck.KafkaException) else exc)
            for secret in self._secrets:
                text = text.replace(secret, "***")
            raise ConfigError(f"events: the kafka configuration is invalid: {text}") from None

    def _client_error(self, err: ck.KafkaError) -> None:
        log.warning("Kafka client (%s): %s", self.servers, err.str())

    async def start(self) -> None:
        if self.started:
            return
        self.loop = asyncio.get_running_loop()
        self._producer = self.new_client(
            ck.Producer, producer_defaults(role_config(self._common, "producer"))
        )
        self._admin = self.new_client(AdminClient, role_config(self._common, "admin"))
        self._producer_thread = client.ProducerThread(self._producer, self.loop, self._reports)
        try:
            await asyncio.to_thread(self._admin.list_topics, timeout=self.timeout)
        except ck.KafkaException as exc:
            await asyncio.to_thread(self._producer_thread.close, 1.0)
            problem = f"cannot reach Kafka at {self.servers}: {exc.args[0].str()}"
            raise Unavailable(problem) from None
        self.started = True

    def _reports(self, reports: list[client.Report]) -> None:
        for batch, err in reports:
            batch.report(err)

    def name_of(self, topic: str) -> str:
        """The Kafka topic of a Lumi topic (with the namespace ``prefix``)."""
        return self.prefix + topic

    def group_id(self, group: str, topic: str) -> str:
        """The Kafka consumer group of ``group`` on ``topic`` (one per service and topic)."""
        return group_id(self.prefix, group, topic)

    # -- topics --------------------------------------------------------------------------------

    async def ensure_topic(self, topic: str, *, partitions: int | None = None) -> None:
        """Create ``topic`` if it is missing (and allowed); learn its partition count."""
        name = self.name_of(topic)
        if name in self._counts:
            return
        async with self._topic_locks.setdefault(name, asyncio.Lock()):
            if name in self._counts:
                return
            if self.create_topics:
                await self._create(name, partitions or self.partitions)
            self._counts[name] = len(await self.partitions_of(topic))

    async def _create(self, name: str, partitions: int) -> None:
        assert self._admin is not None
        new = NewTopic(name, num_partitions=partitions, replication_factor=self.replication_factor)
        futures = self._admin.create_topics([new], request_timeout=self.timeout)
        try:
            await asyncio.wrap_future(futures[name])
        except ck.KafkaException as exc:
            err = exc.args[0]
            if err.code() not in _NOT_FATAL:
                raise Unavailable(f"creating Kafka topic {name} failed: {err.str()}") from None
            if err.code() != ck.KafkaError.TOPIC_ALREADY_EXISTS:
                log.info("not allowed to create Kafka topic %s (%s); using it as it is", name, err)

    async def partitions_of(self, topic: str) -> list[int]:
        assert self._admin is not None
        name = self.name_of(topic)
        metadata = await asyncio.to_thread(self._admin.list_topics, name, timeout=self.timeout)
        self._admin.poll(0)  # serve its log and error callbacks
        found = metadata.topics.get(name)
        return [] if found is None or found.error is not None else sorted(found.partitions)

    async def end_offsets(self, topic: str) -> dict[int, int]:
        return await asyncio.to_thread(
            client.end_offsets, self.consumer_config, self.name_of(topic), self.timeout
        )

    # -- publishing ----------------------------------------------------------------------------

    async def publish(self, topic: str, envelopes: Sequence[Envelope]) -> None:
        if not envelopes:
            return
        self._check_open()
        await self.ensure_topic(topic)
        name = self.name_of(topic)
        count = self._counts.get(name, 0)
        spread = next(self._next) % count if count > 1 else -1
        records: list[Record] = []
        for envelope in envelopes:
            body, headers = encode(envelope, mode=self.mode, prefix=PREFIX)
            key = envelope.partitionkey
            if key is None:
                records.append((None, body, headers, spread))
            else:
                records.append((key.encode(), body, headers, -1))
        await self._send(name, records)

    async def _send(self, name: str, records: list[Record]) -> None:
        assert self._producer is not None and self._producer_thread is not None
        batch = _Batch(self.loop, len(records), name)
        delivered = self._producer_thread.callback(batch)
        for key, value, headers, partition in records:
            while True:
                try:
                    self._producer.produce(
                        name, value, key, partition=partition, headers=list(headers.items()),
                        on_delivery=delivered,
                    )  # fmt: skip
                    break
                except BufferError:  # the producer's queue is full: let deliveries drain it
                    await asyncio.sleep(0.005)
        await batch.future

    def _check_open(self) -> None:
        if not self.started or self._closed:
            raise RuntimeError(f"the Kafka broker ({self.servers}) is not started or is closed")

    # -- consuming -----------------------------------------------------------------------------

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
        self._check_open()
        if group is None:
            reader = Reader(self, topic, handler)
            self._subscriptions.append(reader)
            await reader.begin(start)
            return reader
        member = GroupMember(self, topic, group, handler, max_attempts=max_attempts, start=start)
        self._subscriptions.append(member)
        await member.begin()
        return member

    def forget(self, subscription: GroupMember | Reader) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    # -- dead letters --------------------------------------------------------------------------

    async def store_dead_letter(self, topic: str, group: str, stored: Envelope) -> None:
        """Append ``stored`` to ``group``'s dead-letter topic of ``topic``."""
        dlq = dead_letter_topic(topic, group)
        await self.ensure_topic(dlq, partitions=1)
        headers = {"content-type": STRUCTURED_CONTENT_TYPE}
        await self._send(self.name_of(dlq), [(stored.id.encode(), stored.to_json(), headers, -1)])

    async def _dead_letter_topics(self, topic: str | None, group: str | None) -> list[str]:
        if topic and group:
            return [dead_letter_topic(topic, group)]
        assert self._admin is not None
        metadata = await asyncio.to_thread(self._admin.list_topics, timeout=self.timeout)
        names = []
        for name in sorted(metadata.topics):
            if not name.startswith(self.prefix):
                continue
            origin = split_dead_letter_topic(name[len(self.prefix) :])
            if origin and (not topic or origin[0] == topic) and (not group or origin[1] == group):
                names.append(name[len(self.prefix) :])
        return names

    async def dead_letters(
        self, topic: str | None = None, group: str | None = None, *, limit: int = 1000
    ) -> list[DeadLetter]:
        self._check_open()
        found: list[tuple[tuple[int, str, int], DeadLetter]] = []
        for dlq in await self._dead_letter_topics(topic, group):
            origin = split_dead_letter_topic(dlq)
            assert origin is not None
            records = await asyncio.to_thread(
                client.read_topic, self.consumer_config, self.name_of(dlq), self.timeout
            )
            live: dict[str, tuple[tuple[int, str, int], DeadLetter]] = {}
            for msg in records:
                headers = header_map(msg.headers())
                if MARKER in headers:
                    live.pop((msg.key() or b"").decode(), None)
                    continue
                try:
                    envelope = decode(msg.value() or b"", headers, prefix=PREFIX)
                except EnvelopeError as exc:
                    log.warning("skipping record %d of %s: %s", msg.offset(), dlq, exc)
                    continue
                order = (msg.timestamp()[1], dlq, msg.offset())
                live[envelope.id] = (order, DeadLetter.from_envelope(*origin, envelope))
            found.extend(live.values())
        return oldest_letters(found, limit)

    async def replay(
        self,
        topic: str | None = None,
        group: str | None = None,
        *,
        event_ids: Sequence[str] | None = None,
    ) -> int:
        wanted = None if event_ids is None else set(event_ids)
        letters = [
            letter
            for letter in await self.dead_letters(topic, group, limit=sys.maxsize)
            if wanted is None or letter.envelope.id in wanted
        ]
        for letter in letters:
            target = replay_topic(letter.topic, letter.group)
            await self.ensure_topic(target, partitions=1)
            body, headers = encode(letter.envelope, mode=self.mode, prefix=PREFIX)
            key = letter.envelope.partitionkey
            await self._send(
                self.name_of(target), [(key.encode() if key else None, body, headers, -1)]
            )
            marker = json.dumps({"replayed": letter.envelope.id, "time": now_rfc3339()}).encode()
            dlq = self.name_of(dead_letter_topic(letter.topic, letter.group))
            await self._send(dlq, [(letter.envelope.id.encode(), marker, {MARKER: "replayed"}, -1)])
        return len(letters)

    # -- lifecycle -----------------------------------------------------------------------------

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        for subscription in list(self._subscriptions):
            await subscription.aclose()
        if self._producer_thread is not None:
            await asyncio.to_thread(self._producer_thread.close, self.timeout)
        # librdkafka clients reconnect until they are destroyed: drop the last references
        self._producer = self._admin = self._producer_thread = None
