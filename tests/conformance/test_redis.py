"""The broker contract on Redis Streams, against a real redis-server."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from lumi.brokers.base import Delivery
from lumi.brokers.redis import RedisBroker
from lumi.model.envelope import Envelope
from lumi.testing import wait_until
from tests.conformance.broker_contract import (
    FAST,
    BrokerContract,
    Connect,
    connections,
    envelope,
    topic_name,
)
from tests.engines.redis import RedisServer


class TestRedisBroker(BrokerContract):
    @pytest.fixture
    async def connect(self, redis_server: RedisServer) -> AsyncIterator[Connect]:
        """Each connection is a new client of the same server, as separate processes would be.
        Every test gets its own key prefix: the server outlives the test, and the contract's
        topic names repeat within one process (topic_name() uses new_id()[:8], which is the
        process's id prefix, the same in every test)."""
        prefix = f"lumi-{uuid.uuid4().hex[:12]}:"
        async with connections(
            lambda: RedisBroker(redis_server.url, prefix=prefix, backoff=FAST, poll_interval=0.5)
        ) as connect:
            yield connect

    async def test_two_members_keep_per_key_order(self, connect: Connect) -> None:
        """Two members read the topic at once (each its own blocking XREADGROUP), yet events
        with one key are handled in publish order, whoever reads them, and each exactly once."""
        one, two = await connect(), await connect()
        topic = topic_name()
        rng = random.Random(7)
        done: list[Envelope] = []

        async def handler(delivery: Delivery) -> None:
            await asyncio.sleep(rng.random() / 500)
            done.append(delivery.envelope)

        await one.subscribe(topic, "G", handler)
        await two.subscribe(topic, "G", handler)
        sent = [envelope(topic, {"n": i}, key=f"k{i % 4}") for i in range(200)]
        for start in range(0, 200, 10):
            await (one if start % 20 else two).publish(topic, sent[start : start + 10])
        await wait_until(lambda: len(done) >= 200, timeout=self.timeout, message="200 events")
        assert sorted(e.id for e in done) == sorted(e.id for e in sent)
        for key in ("k0", "k1", "k2", "k3"):
            assert [e.id for e in done if e.partitionkey == key] == [
                e.id for e in sent if e.partitionkey == key
            ]

    async def test_keyed_entry_of_a_dead_reader_is_ordered_by_the_next(
        self, redis_server: RedisServer
    ) -> None:
        """A keyed entry read by a member that died before ordering it is taken over once its
        lease ran out, and the events behind it with its key still come after it."""
        prefix = f"lumi-{uuid.uuid4().hex[:12]}:"
        topic = topic_name()
        async with RedisBroker(
            redis_server.url, prefix=prefix, backoff=FAST, poll_interval=0.2, lease=1.0
        ) as broker:
            await broker._ensure_group(topic, "G", "0")
            first = envelope(topic, {"n": 0}, key="k")
            await broker.publish(topic, [first])
            # A reader that dies right after XREADGROUP: the entry is pending, never ordered.
            got = await broker.client.xreadgroup("G", "dead", {broker.keys.stream(topic): ">"})
            assert got
            later = [envelope(topic, {"n": i}, key="k") for i in range(1, 6)]
            await broker.publish(topic, later)
            done: list[Envelope] = []

            async def handler(delivery: Delivery) -> None:
                done.append(delivery.envelope)

            await broker.subscribe(topic, "G", handler)
            await wait_until(lambda: len(done) >= 6, timeout=10, message="6 events")
            assert [e.id for e in done] == [first.id] + [e.id for e in later]

    async def test_close_does_not_wait_out_a_long_blocked_read(
        self, redis_server: RedisServer
    ) -> None:
        """An idle member is blocked in XREADGROUP on its own connection; closing it returns
        within about one poll interval (its longest block), and publishing meanwhile is not
        held up by the blocked read."""
        prefix = f"lumi-{uuid.uuid4().hex[:12]}:"
        topic = topic_name()
        async with RedisBroker(redis_server.url, prefix=prefix, poll_interval=1.0) as broker:

            async def handler(delivery: Delivery) -> None:
                pass

            subscription = await broker.subscribe(topic, "G", handler)

            async def blocked() -> bool:  # the member's read is waiting in Redis
                clients = await broker.client.client_list()
                return any(c["cmd"] == "xreadgroup" and "b" in c["flags"] for c in clients)

            await wait_until(blocked, timeout=5, message="a read blocked in XREADGROUP")
            started = time.monotonic()
            await asyncio.wait_for(broker.publish(topic, [envelope(topic, 1)]), 0.5)
            await subscription.aclose()
            assert time.monotonic() - started < 2.5
