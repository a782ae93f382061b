"""The SNS broker: events on AWS SNS topics, consumed from SQS queues (aiobotocore).

    events = "sns://?region=eu-west-1"                              # real AWS, standard credentials
    events = "sns://?region=us-east-1&endpoint=http://127.0.0.1:5000" # moto_server, LocalStack

* **A topic per event**: SNS topic ``lumi-<topic>-<digest>.fifo`` (names: :mod:`._aws_names`),
  created on first use. Publishing is ``Publish``/``PublishBatch`` (10 per call) with the
  CloudEvents JSON as the message and ``traceparent``, ``correlationid`` and ``partitionkey`` as
  message attributes; it returns once SNS has accepted the batch.
* **A queue per subscribing service** (consumer group), created on demand and subscribed with raw
  delivery; members long-poll it (:mod:`._sqs_consumer`). The visibility timeout is the lease:
  extended while a handler runs, set to the backoff after a failure.
* **Per-key order**: topics and queues are FIFO by default, with the partition key as the
  message group (an unkeyed event is a group of its own), so SQS itself holds back an event while
  an earlier one with its key is in flight or waiting for its retry. ``fifo=false`` uses
  standard topics and queues instead: more throughput, but **no order at all**.
* **Dead letters**: a failed event (after ``max_attempts``, or rejected) is published to the
  dead-letter topic ``<topic>.<group>.dlq``, an ordinary topic. Every topic also feeds an
  *archive* queue (a standard queue, ``retention`` long; 14 days for dead-letter topics): the
  archive of a dead-letter topic is where :meth:`dead_letters` reads and :meth:`replay` takes
  from. Each group queue has a redrive policy (``maxReceiveCount`` = ``max_attempts``) to a redrive
  queue, for events whose consumer died during the last attempt; they are moved to the
  dead-letter topic when the group subscribes, and by ``dead_letters``/``replay``.
* **Retention**: SNS keeps nothing, so a *new* group that starts from ``earliest`` is first
  filled from the topic's archive (copies of the events of the last ``retention``), then follows
  the topic. Events published during that copy may arrive twice (at-least-once) and, for those
  only, out of key order. ``archive=false`` turns archives of ordinary topics off: a new group
  then starts with its queue.

URL: ``sns://?region=R&profile=P&endpoint=URL&prefix=lumi-&fifo=true&archive=true&retention=4d
&lease=30s&wait=5s``. Credentials come from the standard AWS chain (environment, profile,
instance or task role), never from the URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiobotocore.session
import botocore.exceptions

from lumi.brokers import _aws_names as names
from lumi.brokers._sqs_consumer import QueueOptions, SqsConsumer
from lumi.brokers._sqs_store import SqsStore, order_key
from lumi.brokers._urls import boolean, duration, expand_env, split_options
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
from lumi.brokers.log_consumer import ConsumerOptions, lease_expired_reason
from lumi.model.context import new_id
from lumi.model.envelope import Envelope
from lumi.model.errors import ConfigError, Unavailable
from lumi.retrying import wait_ready

log = logging.getLogger("lumi.brokers.sns")

_OPTIONS = (
    "region",
    "profile",
    "endpoint",
    "prefix",
    "fifo",
    "archive",
    "retention",
    "lease",
    "wait",
)
DAY = 86400.0


class SnsBroker(Broker):
    """SNS topics and SQS queues as Lumi's event backend; see the module docstring."""

    name = "sns"

    def __init__(
        self,
        *,
        region: str | None = None,
        profile: str | None = None,
        endpoint: str | None = None,
        prefix: str = "lumi-",
        fifo: bool = True,
        archive: bool = True,
        retention: float = 4 * DAY,
        lease: float = 30.0,
        wait: float = 5.0,
        backoff: Backoff | None = None,
        concurrency: int = 32,
        drain_timeout: float = 30.0,
        poll_interval: float = 1.0,
        connect_timeout: float = 30.0,
    ) -> None:
        super().__init__()
        self.region = region
        self.profile = profile
        self.endpoint = endpoint
        self.prefix = prefix
        self.fifo = fifo
        self.archive = archive
        self.retention = max(60.0, min(14 * DAY, retention))
        self.connect_timeout = connect_timeout
        self.queue_options = QueueOptions(
            ConsumerOptions(
                concurrency=concurrency,
                lease=max(1.0, lease),
                backoff=backoff or Backoff(initial=0.2, maximum=lease),
                drain_timeout=drain_timeout,
                poll_interval=poll_interval,
            ),
            wait=max(0, min(20, round(wait))),
        )
        self._stack = contextlib.AsyncExitStack()
        self.sns: Any = None
        self.sqs: Any = None
        self.store: SqsStore | None = None
        self._topics: dict[str, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._subscriptions: list[Subscription] = []
        self._closed = False

    def __repr__(self) -> str:
        where = self.endpoint or f"AWS {self.region or '(default region)'}"
        return f"SnsBroker({where!r})"

    @classmethod
    def from_url(cls, url: str, *, app_dir: Path, **options: Any) -> SnsBroker:
        """``sns://?region=…&endpoint=…``; see the module docstring for the options."""
        expanded = expand_env(url)
        if not expanded.startswith("sns://") or expanded[len("sns://") :].split("?")[0]:
            raise ConfigError(
                f"events: write the SNS broker as sns://?region=REGION[&endpoint=URL], not {url!r}"
            )
        ours, rest = split_options(expanded, _OPTIONS, broker="sns")
        if rest:
            raise ConfigError(
                f"events: unknown option {rest[0][0]!r} of the sns broker "
                f"(valid: {', '.join(_OPTIONS)})"
            )
        for name in ("region", "profile", "endpoint", "prefix"):
            if name in ours:
                options[name] = ours[name]
        for name in ("fifo", "archive"):
            if name in ours:
                options[name] = boolean(name, ours[name], broker="sns")
        for name in ("retention", "lease", "wait"):
            if name in ours:
                options[name] = duration(name, ours[name], broker="sns")
        return cls(**options)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        if self.started:
            return
        session = aiobotocore.session.AioSession(profile=self.profile)
        region = self.region or session.get_config_variable("region")
        if not region:
            raise ConfigError(
                "events: the sns broker needs a region: sns://?region=us-east-1, or set "
                "AWS_DEFAULT_REGION or a profile's region"
            )
        try:
            for service in ("sns", "sqs"):
                client = await self._stack.enter_async_context(
                    session.create_client(service, region_name=region, endpoint_url=self.endpoint)
                )
                setattr(self, service, client)
        except botocore.exceptions.ProfileNotFound as exc:
            await self._stack.aclose()
            raise ConfigError(f"events: {exc}") from None
        self.store = SqsStore(self.sqs)
        refused: list[str] = []

        async def reachable() -> None:
            try:
                await self.sqs.list_queues(QueueNamePrefix=self.prefix, MaxResults=1)
            except botocore.exceptions.NoCredentialsError:
                refused.append(
                    "no AWS credentials found (environment, ~/.aws profile or an instance role)"
                )
            except botocore.exceptions.ClientError as exc:
                refused.append(_aws_message(exc))

        try:
            await wait_ready(reachable, f"SQS ({self!r})", timeout=self.connect_timeout)
        except Exception as exc:
            await self._stack.aclose()
            raise Unavailable(f"cannot reach SQS ({self!r}): {exc}") from None
        if refused:
            await self._stack.aclose()
            raise ConfigError(f"events: the sns broker cannot use AWS: {refused[0]}")
        await super().start()

    async def aclose(self) -> None:
        if self._closed:
            return
        subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            await subscription.aclose()
        self._closed = True
        await self._stack.aclose()

    # -- topics and queues ---------------------------------------------------------------------

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def _topic_arn(self, topic: str) -> str:
        """The topic's ARN, creating the topic (and its archive queue) the first time."""
        arn = self._topics.get(topic)
        if arn is not None:
            return arn
        async with self._lock("topic:" + topic):
            if topic in self._topics:
                return self._topics[topic]
            attributes = {"FifoTopic": "true"} if self.fifo else {}
            name = names.topic_name(self.prefix, topic, fifo=self.fifo)
            reply = await self.sns.create_topic(Name=name, Attributes=attributes)
            arn = str(reply["TopicArn"])
            dead = split_dead_letter_topic(topic) is not None
            if self.archive or dead:
                retention = 14 * DAY if dead else self.retention
                archive = await self.store_queue(
                    names.queue_name(self.prefix, topic, "archive", fifo=False),
                    fifo=False,
                    attributes={"MessageRetentionPeriod": str(int(retention))},
                    tags=names.tags(topic, "archive"),
                )
                await self._subscribe_queue(arn, archive[0], archive[1])
            self._topics[topic] = arn
            return arn

    async def store_queue(
        self, name: str, *, fifo: bool, attributes: dict[str, str], tags: dict[str, str]
    ) -> tuple[str, str, bool]:
        """(url, arn, created now) of the queue ``name``, created with ``attributes`` if missing."""
        created = False
        try:
            url = (await self.sqs.get_queue_url(QueueName=name))["QueueUrl"]
        except botocore.exceptions.ClientError as exc:
            if "NonExistentQueue" not in str(exc) and "QueueDoesNotExist" not in str(exc):
                raise Unavailable(f"SQS refused get_queue_url: {_aws_message(exc)}") from None
            full = {**attributes, **({"FifoQueue": "true"} if fifo else {})}
            url = (await self.sqs.create_queue(QueueName=name, Attributes=full, tags=tags))[
                "QueueUrl"
            ]
            created = True
        reply = await self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return str(url), str(reply["Attributes"]["QueueArn"]), created

    async def _subscribe_queue(self, topic_arn: str, queue_url: str, queue_arn: str) -> str:
        """Let the topic write to the queue (needed on real AWS) and subscribe it, raw."""
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "sns.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": queue_arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
                }
            ],
        }
        await self.sqs.set_queue_attributes(
            QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)}
        )
        reply = await self.sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes={"RawMessageDelivery": "true"},
            ReturnSubscriptionArn=True,
        )
        return str(reply["SubscriptionArn"])

    async def _group_queue(self, topic: str, group: str, max_attempts: int) -> tuple[str, bool]:
        """The group's queue (url, created now), subscribed to the topic, with its redrive."""
        topic_arn = await self._topic_arn(topic)
        tags = names.tags(topic, "redrive", group)
        redrive = await self.store_queue(
            names.queue_name(self.prefix, topic, "redrive", group, fifo=self.fifo),
            fifo=self.fifo,
            attributes={"MessageRetentionPeriod": str(int(14 * DAY))},
            tags=tags,
        )
        attributes = {
            "VisibilityTimeout": str(round(self.queue_options.consumer.lease)),
            "MessageRetentionPeriod": str(int(14 * DAY)),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": redrive[1], "maxReceiveCount": max_attempts}
            ),
        }
        url, arn, created = await self.store_queue(
            names.queue_name(self.prefix, topic, "group", group, fifo=self.fifo),
            fifo=self.fifo,
            attributes=attributes,
            tags=names.tags(topic, "group", group),
        )
        if not created:  # max_attempts or the lease may have changed since it was created
            await self.sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
        await self._subscribe_queue(topic_arn, url, arn)
        return url, created

    async def _existing_group_queue(self, topic: str, group: str) -> str:
        """The group's queue URL; created (with the default max_attempts) only if missing, so a
        replay never changes a running group's redrive policy."""
        name = names.queue_name(self.prefix, topic, "group", group, fifo=self.fifo)
        try:
            return str((await self.sqs.get_queue_url(QueueName=name))["QueueUrl"])
        except botocore.exceptions.ClientError:
            url, _ = await self._group_queue(topic, group, 5)
            return url

    # -- the contract --------------------------------------------------------------------------

    async def publish(self, topic: str, envelopes: Sequence[Envelope]) -> None:
        if self._closed or self.sns is None:
            raise RuntimeError("the sns broker is not started or is closed")
        arn = await self._topic_arn(topic)
        stamp = time.time_ns()
        entries = [self._entry(envelope, stamp, i) for i, envelope in enumerate(envelopes)]
        try:
            if len(entries) == 1:
                await self.sns.publish(TopicArn=arn, **entries[0])
                return
            for start in range(0, len(entries), 10):
                chunk = [
                    {"Id": str(i), **entry} for i, entry in enumerate(entries[start : start + 10])
                ]
                reply = await self.sns.publish_batch(TopicArn=arn, PublishBatchRequestEntries=chunk)
                if reply.get("Failed"):
                    raise Unavailable(f"SNS refused part of a batch on {topic}: {reply['Failed']}")
        except botocore.exceptions.ClientError as exc:
            raise Unavailable(f"SNS refused a publish on {topic}: {_aws_message(exc)}") from None

    def _entry(self, envelope: Envelope, stamp: int, index: int) -> dict[str, Any]:
        attributes = {"lumi.seq": _string(f"{stamp:020d}{index:05d}")}
        for name in ("traceparent", "correlationid", "partitionkey"):
            value = getattr(envelope, name)
            if value:
                attributes[name] = _string(value)
        entry: dict[str, Any] = {
            "Message": envelope.to_json().decode(),
            "MessageAttributes": attributes,
        }
        if self.fifo:
            # Each publish counts (no SNS dedupe); an unkeyed event is a message group of its own.
            unique = new_id()
            entry["MessageGroupId"] = envelope.partitionkey or unique
            entry["MessageDeduplicationId"] = unique
        return entry

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
        if self._closed or self.sqs is None:
            raise RuntimeError("the sns broker is not started or is closed")
        if group is None:
            return await self._reader(topic, handler, start)
        url, created = await self._group_queue(topic, group, max_attempts)
        if created and start == "earliest":
            await self._fill_from_archive(topic, url, fifo=self.fifo)
        await self._drain_redrive(topic, group)
        dlq_topic = dead_letter_topic(topic, group)

        async def dead_letter(envelope: Envelope, reason: str, attempts: int) -> None:
            stored = envelope.dead_lettered(group=group, reason=reason, attempts=attempts)
            await self.publish(dlq_topic, [stored])

        consumer = SqsConsumer(
            self.sqs, url, handler, topic=topic, group=group, max_attempts=max_attempts,
            options=self.queue_options, dead_letter=dead_letter,
        )  # fmt: skip
        consumer.start()
        self._subscriptions.append(consumer)
        return _Tracked(self, consumer)

    async def _reader(self, topic: str, handler: DeliveryHandler, start: str) -> Subscription:
        """A private queue for an ephemeral reader, deleted when it closes."""
        topic_arn = await self._topic_arn(topic)
        name = names.queue_name(self.prefix, topic, "tail", new_id()[-12:], fifo=False)
        url, arn, _ = await self.store_queue(
            name, fifo=False, attributes={"MessageRetentionPeriod": "3600"},
            tags=names.tags(topic, "tail"),
        )  # fmt: skip
        subscription_arn = await self._subscribe_queue(topic_arn, url, arn)
        if start == "earliest":
            await self._fill_from_archive(topic, url, fifo=False)
        consumer = SqsConsumer(
            self.sqs, url, handler, topic=topic, group=None, max_attempts=1,
            options=self.queue_options, dead_letter=None,
        )  # fmt: skip
        consumer.start()

        async def remove() -> None:
            with contextlib.suppress(Exception):
                await self.sns.unsubscribe(SubscriptionArn=subscription_arn)
            with contextlib.suppress(Exception):
                await self.sqs.delete_queue(QueueUrl=url)

        self._subscriptions.append(consumer)
        return _Tracked(self, consumer, after=remove)

    async def _fill_from_archive(self, topic: str, url: str, *, fifo: bool) -> None:
        """Copy the topic's archived events into a new queue, oldest first."""
        if not self.archive and split_dead_letter_topic(topic) is None:
            return
        assert self.store is not None
        archive_url, _, _ = await self.store_queue(
            names.queue_name(self.prefix, topic, "archive", fifo=False), fifo=False,
            attributes={}, tags=names.tags(topic, "archive"),
        )  # fmt: skip
        async with self.store.peek(archive_url) as messages:
            await self.store.copy(messages, url, fifo=fifo)

    async def _drain_redrive(self, topic: str, group: str) -> int:
        """Move events the redrive policy took (their consumer died on the last attempt) to the
        group's dead-letter topic, with the reason."""
        assert self.store is not None
        name = names.queue_name(self.prefix, topic, "redrive", group, fifo=self.fifo)
        try:
            url = (await self.sqs.get_queue_url(QueueName=name))["QueueUrl"]
        except botocore.exceptions.ClientError:
            return 0
        moved = 0
        async with self.store.peek(url) as messages:
            for message in list(messages):
                try:
                    envelope = Envelope.from_json(message["Body"])
                except ValueError:
                    continue
                attempts = int(message["Attributes"].get("ApproximateReceiveCount", "0"))
                reason = lease_expired_reason(attempts, "moved by the SQS redrive policy")
                stored = envelope.dead_lettered(group=group, reason=reason, attempts=attempts)
                await self.publish(dead_letter_topic(topic, group), [stored])
                await self.store.delete(url, [message])
                messages.remove(message)
                moved += 1
        return moved

    async def _stores(
        self, topic: str | None, group: str | None
    ) -> list[tuple[str, tuple[str, str], str]]:
        """(dead-letter topic, (topic, group), archive url) of every matching group."""
        assert self.store is not None
        found = []
        for url, tags in await self.store.queues(self.prefix):
            origin_topic, role, origin_group = (
                tags.get("lumi:topic", ""), tags.get("lumi:role"), tags.get("lumi:group"),
            )  # fmt: skip
            if role == "redrive" and origin_group is not None:
                if (not topic or origin_topic == topic) and (not group or origin_group == group):
                    await self._drain_redrive(origin_topic, origin_group)
                continue
            origin = split_dead_letter_topic(origin_topic)
            if role != "archive" or origin is None:
                continue
            if (topic and origin[0] != topic) or (group and origin[1] != group):
                continue
            found.append((origin_topic, origin, url))
        return found

    async def dead_letters(
        self, topic: str | None = None, group: str | None = None, *, limit: int = 1000
    ) -> list[DeadLetter]:
        assert self.store is not None
        letters: list[tuple[str, DeadLetter]] = []
        for _, origin, url in await self._stores(topic, group):
            async with self.store.peek(url, limit=limit) as messages:
                for message in messages:
                    try:
                        stored = Envelope.from_json(message["Body"])
                    except ValueError:
                        continue
                    letter = DeadLetter.from_envelope(*origin, stored)
                    letters.append((order_key(message), letter))
        return oldest_letters(letters, limit)

    async def replay(
        self,
        topic: str | None = None,
        group: str | None = None,
        *,
        event_ids: Sequence[str] | None = None,
    ) -> int:
        assert self.store is not None
        wanted = None if event_ids is None else set(event_ids)
        count = 0
        for _, (origin_topic, origin_group), url in await self._stores(topic, group):
            async with self.store.peek(url) as messages:
                chosen = []
                for message in messages:
                    try:
                        stored = Envelope.from_json(message["Body"])
                    except ValueError:
                        continue
                    if wanted is None or stored.id in wanted:
                        chosen.append((message, stored.revived()))
                if not chosen:
                    continue
                target = await self._existing_group_queue(origin_topic, origin_group)
                await self.store.send(target, [revived for _, revived in chosen], fifo=self.fifo)
                await self.store.delete(url, [message for message, _ in chosen])
                for message, _ in chosen:
                    messages.remove(message)
                count += len(chosen)
        return count


class _Tracked(Subscription):
    def __init__(self, broker: SnsBroker, inner: SqsConsumer, after: Any = None) -> None:
        self.broker = broker
        self.inner = inner
        self.after = after

    async def aclose(self) -> None:
        if self.inner in self.broker._subscriptions:
            self.broker._subscriptions.remove(self.inner)
        await self.inner.aclose()
        if self.after is not None:
            await self.after()


def _string(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


def _aws_message(exc: botocore.exceptions.ClientError) -> str:
    error = exc.response.get("Error", {})
    return f"{error.get('Code', 'error')}: {error.get('Message', str(exc))}"


__all__ = ["SnsBroker"]
