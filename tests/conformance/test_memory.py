"""The broker contract on the memory broker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from lumi.brokers.memory import MemoryBroker
from tests.conformance.broker_contract import FAST, BrokerContract, Connect, connections


class TestMemoryBroker(BrokerContract):
    @pytest.fixture
    async def connect(self) -> AsyncIterator[Connect]:
        """One in-process broker; every "connection" is the same instance."""
        broker = MemoryBroker(backoff=FAST)
        async with connections(lambda: broker) as connect:
            yield connect
