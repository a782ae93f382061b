"""The broker contract on Redis Streams, against a real redis-server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from lumi.brokers.redis import RedisBroker
from tests.conformance.broker_contract import FAST, BrokerContract, Connect, connections
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
