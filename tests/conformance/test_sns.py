"""The broker contract on SNS+SQS, against a real moto_server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from lumi.brokers.sns import SnsBroker
from tests.conformance.broker_contract import FAST, BrokerContract, Connect, connections
from tests.engines.moto import MotoServer


class TestSnsBroker(BrokerContract):
    timeout = 60.0  # moto_server slows down badly on a loaded machine; the semantics are the same

    @pytest.fixture
    async def connect(self, moto_server: MotoServer) -> AsyncIterator[Connect]:
        """Each connection is a new pair of SNS and SQS clients of the same server. Every test
        gets its own name prefix: the server outlives the test, and the contract's topic names
        repeat within one process (topic_name() uses the process's id prefix)."""
        prefix = f"t{uuid.uuid4().hex[:8]}-"
        async with connections(
            lambda: SnsBroker(
                region="us-east-1",
                endpoint=moto_server.endpoint,
                prefix=prefix,
                backoff=FAST,
                wait=1,
            )
        ) as connect:
            yield connect
