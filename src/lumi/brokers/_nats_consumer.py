"""NATS JetStream subscriptions: a member of a durable pull consumer, and an ephemeral reader.

A group on a topic is one durable pull consumer of the broker's stream, filtered on the topic's
subject and the group's replay subject; every replica of the service pulls from it, so each
event reaches one of them. A member keeps one pull request open (``batch`` = the room it has,
``expires`` a few seconds, with idle heartbeats so a request lost to a server restart is noticed)
and feeds what arrives to a :class:`KeyedRunner`:

* success → ``+ACK``; a keyless failure → ``NAK`` with the backoff as delay (redelivered by the
  server, perhaps to another replica, and counted by it); a keyed failure is retried in the
  member so later events of its key wait (JetStream would deliver them meanwhile);
* every unsettled message is kept alive with ``+WPI`` (in progress) every third of the lease
  (``ack_wait``), so only a member that died loses its messages, after the lease;
* a message the server delivered ``max_attempts`` times already is dead-lettered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from lumi.brokers._cloudevents import decode, header_map
from lumi.brokers._keyed import Inbound, KeyedRunner, Settlement
from lumi.brokers._nats_config import durable_name
from lumi.brokers.base import Delivery, DeliveryHandler, Subscription
from lumi.events import Envelope, EnvelopeError

if TYPE_CHECKING:
    from lumi.brokers.nats import NatsBroker

log = logging.getLogger("lumi.brokers.nats")

PREFIX = "ce-"
EXPIRES = 10.0  # seconds a pull request stays open
HEARTBEAT = 2.0  # the server's idle heartbeat on an open pull request


def _inbound(msg: Msg, topic: str) -> Inbound:
    try:
        envelope: Envelope | None = decode(msg.data, header_map(msg.headers), prefix=PREFIX)
        error = ""
    except EnvelopeError as exc:
        envelope, error = None, str(exc)
    delivered = msg.metadata.num_delivered - 1
    return Inbound(
        token=msg, envelope=envelope, raw=msg.data, error=error, delivered=delivered, topic=topic
    )


class NatsMember(Subscription, Settlement):
    """One replica pulling from the durable consumer of (topic, group)."""

    def __init__(
        self,
        broker: NatsBroker,
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
        self.durable = durable_name(group, topic)
        self.runner = KeyedRunner(
            handler, self, topic=topic, group=group, max_attempts=max_attempts,
            backoff=broker.backoff, concurrency=broker.concurrency,
        )  # fmt: skip
        self.runner.on_settled = self._wake
        self._credits = 0  # messages the open pull request may still bring
        self._deadline = 0.0  # when the open request ends (or is presumed lost)
        self._kick = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._sub: Any = None
        self._closed = False

    async def begin(self) -> None:
        broker = self.broker
        js = broker.js
        try:
            await broker.api(lambda: js.consumer_info(broker.stream, self.durable))
        except NotFoundError:
            config = ConsumerConfig(
                durable_name=self.durable,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=broker.lease,
                max_deliver=-1,  # Lumi dead-letters; the server would only stop delivering
                filter_subjects=[
                    broker.subject_of(self.topic),
                    broker.subject_of(broker.replay_topic(self.topic, self.group)),
                ],
                deliver_policy=DeliverPolicy.NEW if self.start == "latest" else DeliverPolicy.ALL,
                max_ack_pending=-1,
            )
            await broker.api(lambda: js.add_consumer(broker.stream, config))
        inbox = broker.nc.new_inbox()
        self._sub = await broker.nc.subscribe(inbox, cb=self._on_msg)
        self._inbox = inbox
        self._next = f"$JS.API.CONSUMER.MSG.NEXT.{broker.stream}.{self.durable}"
        self._tasks = [
            asyncio.create_task(self._pull(), name=f"lumi-nats-pull-{self.durable}"),
            asyncio.create_task(self._keep_alive(), name=f"lumi-nats-wpi-{self.durable}"),
        ]

    def _wake(self) -> None:
        self._kick.set()

    async def _pull(self) -> None:
        window = self.broker.window
        while not self._closed:
            now = time.monotonic()
            if self._credits and now > self._deadline:
                self._credits = 0  # the request ended without a word (server restarted?)
            room = window - self.runner.size
            if not self._credits and room > 0:
                request = {
                    "batch": room,
                    "expires": int(EXPIRES * 1e9),
                    "idle_heartbeat": int(HEARTBEAT * 1e9),
                }
                try:
                    await self.broker.nc.publish(
                        self._next, json.dumps(request).encode(), reply=self._inbox
                    )
                    self._credits = room
                    self._deadline = now + EXPIRES + HEARTBEAT
                except Exception as exc:
                    log.warning("pulling %s for %s failed: %s", self.topic, self.group, exc)
                    await asyncio.sleep(0.5)
                    continue
            self._kick.clear()
            wait = max(0.05, self._deadline - time.monotonic()) if self._credits else 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), wait)

    async def _on_msg(self, msg: Msg) -> None:
        headers = msg.headers or {}
        status = headers.get("Status")
        if status is not None:
            if status == "100":
                self._deadline = max(self._deadline, time.monotonic() + 3 * HEARTBEAT)
                if msg.reply:  # flow control asks for an answer
                    await self.broker.nc.publish(msg.reply)
                return
            if status not in ("404", "408"):
                log.warning(
                    "pulling %s for %s: %s %s", self.topic, self.group, status,
                    headers.get("Description", ""),
                )  # fmt: skip
            self._credits = 0  # this request is over
            self._kick.set()
            return
        if not msg.reply or self._closed:
            return
        self._credits = max(0, self._credits - 1)
        self._deadline = max(self._deadline, time.monotonic() + 3 * HEARTBEAT)
        self.runner.submit(_inbound(msg, self.topic))
        if not self._credits:
            self._kick.set()

    async def _keep_alive(self) -> None:
        interval = self.broker.lease / 3
        while True:
            await asyncio.sleep(interval)
            for item in self.runner.unsettled():
                with contextlib.suppress(Exception):
                    await item.token.in_progress()

    # -- Settlement ----------------------------------------------------------------------------

    async def ack(self, item: Inbound) -> None:
        await item.token.ack()

    async def dead_letter(self, item: Inbound, stored: Envelope) -> None:
        await self.broker.store_dead_letter(self.topic, self.group, stored)

    async def retry_later(self, item: Inbound, delay: float) -> bool:
        await item.token.nak(delay=delay)
        return True

    async def release(self, items: list[Inbound]) -> None:
        for item in items:
            with contextlib.suppress(Exception):
                await item.token.nak()

    async def aclose(self) -> None:
        """Let running handlers finish, give the rest back, stop pulling."""
        if self._closed:
            return
        self._closed = True
        if self._sub is not None:
            await self._sub.unsubscribe()  # the server drops requests nobody listens to
        await self.runner.stop(self.broker.drain_timeout)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.broker.nc.flush()
        self.broker.forget(self)


class NatsReader(Subscription):
    """An ephemeral reader (``group=None``): an ordered push consumer; no state, no retries."""

    def __init__(self, broker: NatsBroker, topic: str, handler: DeliveryHandler) -> None:
        self.broker = broker
        self.topic = topic
        self.handler = handler
        self._sub: Any = None

    async def begin(self, start: str) -> None:
        policy = DeliverPolicy.NEW if start == "latest" else DeliverPolicy.ALL
        self._sub = await self.broker.js.subscribe(
            self.broker.subject_of(self.topic),
            ordered_consumer=True,
            deliver_policy=policy,
            cb=self._on_msg,
        )

    async def _on_msg(self, msg: Msg) -> None:
        try:
            envelope = decode(msg.data, header_map(msg.headers), prefix=PREFIX)
            await self.handler(Delivery(self.topic, None, envelope, 1))
        except Exception:
            log.exception("a reader of %s failed on an event", self.topic)

    async def aclose(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        self.broker.forget(self)
