"""NATS JetStream subscriptions: a member of a durable pull consumer, and an ephemeral reader.

A group on a topic is one durable pull consumer of the broker's stream, filtered on the topic's
subject and the group's replay subject; every replica of the service pulls from it, so each
event reaches one of them. A member keeps pull requests open for the room it has (``expires`` a
few seconds, with idle heartbeats so a request lost to a server restart is noticed) and feeds
what arrives to a :class:`KeyedRunner`:

* success → ``+ACK``; a keyless failure → ``NAK`` with the backoff as delay (redelivered by the
  server, perhaps to another replica, and counted by it); a keyed failure is retried in the
  member so later events of its key wait (JetStream would deliver them meanwhile);
* every unsettled message is kept alive with ``+WPI`` (in progress) every third of the lease
  (``ack_wait``), so only a member that died loses its messages, after the lease;
* a message the server delivered ``max_attempts`` times already is dead-lettered.
"""

from __future__ import annotations

import asyncio
import collections
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
from lumi.model.envelope import Envelope, EnvelopeError

if TYPE_CHECKING:
    from lumi.brokers.nats import NatsBroker

log = logging.getLogger("lumi.brokers.nats")

PREFIX = "ce-"
EXPIRES = 10.0  # seconds a pull request stays open
HEARTBEAT = 2.0  # the server's idle heartbeat on an open pull request


def _inbound(msg: Msg, topic: str, group: str) -> Inbound:
    try:
        envelope: Envelope | None = decode(msg.data, header_map(msg.headers), prefix=PREFIX)
        error = ""
    except EnvelopeError as exc:
        envelope, error = None, str(exc)
    delivered = msg.metadata.num_delivered - 1
    return Inbound(msg, envelope, msg.data, error, delivered, topic, group)


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
        self._credits = 0  # messages the open pull requests may still bring
        self._requests: collections.deque[list[float]] = collections.deque()  # [left, deadline]
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
        if self._want_pull():
            self._kick.set()

    def _want_pull(self) -> bool:
        """Pull when half the window is free (or nothing is asked for and anything is)."""
        room = self.broker.window - self.runner.size - self._credits
        return room >= max(1, self.broker.window // 2) or (not self._credits and room > 0)

    def _request_over(self) -> None:
        if self._requests:
            self._credits -= int(self._requests.popleft()[0])

    async def _pull(self) -> None:
        """Keep pull requests open for the room the member has. The server fills requests
        oldest first, so each message counts against the oldest; a request ends when it is
        filled, expires (408), or goes quiet past its deadline (the server restarted)."""
        while not self._closed:
            now = time.monotonic()
            while self._requests and self._requests[0][1] < now:
                self._request_over()
            if self._want_pull():
                batch = int(self.broker.window - self.runner.size - self._credits)
                request = {
                    "batch": batch,
                    "expires": int(EXPIRES * 1e9),
                    "idle_heartbeat": int(HEARTBEAT * 1e9),
                }
                try:
                    await self.broker.nc.publish(
                        self._next, json.dumps(request).encode(), reply=self._inbox
                    )
                except Exception as exc:
                    log.warning("pulling %s for %s failed: %s", self.topic, self.group, exc)
                    await asyncio.sleep(0.5)
                    continue
                self._requests.append([batch, now + EXPIRES + HEARTBEAT])
                self._credits += batch
            self._kick.clear()
            wait = self._requests[0][1] - time.monotonic() if self._requests else 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), max(0.05, wait))

    async def _on_msg(self, msg: Msg) -> None:
        headers = msg.headers or {}
        status = headers.get("Status")
        if status is not None:
            if status == "100":  # idle heartbeat: the server still holds the requests
                until = time.monotonic() + 3 * HEARTBEAT
                for request in self._requests:
                    request[1] = max(request[1], until)
                if msg.reply:  # flow control asks for an answer
                    await self.broker.nc.publish(msg.reply)
                return
            if status not in ("404", "408"):
                log.warning(
                    "pulling %s for %s: %s %s", self.topic, self.group, status,
                    headers.get("Description", ""),
                )  # fmt: skip
            self._request_over()
            self._kick.set()
            return
        if not msg.reply or self._closed:
            return
        if self._requests:
            head = self._requests[0]
            head[0] -= 1
            self._credits -= 1
            if head[0] <= 0:
                self._requests.popleft()
        self.runner.submit(_inbound(msg, self.topic, self.group))
        if self._want_pull():
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
