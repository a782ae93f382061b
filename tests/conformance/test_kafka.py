"""The broker contract on Kafka: a real tansu broker started by the test session."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lumi.brokers import create_broker
from tests.conformance.broker_contract import FAST, BrokerContract, Connect, connections
from tests.engines.kafka import Tansu

pytestmark = pytest.mark.slow


class TestKafkaBroker(BrokerContract):
    @pytest.fixture
    async def connect(self, kafka_engine: Tansu, tmp_path: Path) -> AsyncIterator[Connect]:
        """Each connection is a new client of the same tansu; every test has its own topic
        and group namespace (``prefix``), as separate apps sharing one cluster would."""
        url = kafka_engine.url(f"prefix=t{uuid.uuid4().hex[:10]}.")
        async with connections(
            lambda: create_broker(url, app_dir=tmp_path, backoff=FAST)
        ) as connect:
            yield connect
