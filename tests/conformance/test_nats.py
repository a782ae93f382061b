"""The broker contract on NATS JetStream: a real nats-server started by the test session."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lumi.brokers import create_broker
from tests.conformance.broker_contract import FAST, BrokerContract, Connect, connections
from tests.engines.nats import NatsServer

pytestmark = pytest.mark.slow


class TestNatsBroker(BrokerContract):
    @pytest.fixture
    async def connect(self, nats_engine: NatsServer, tmp_path: Path) -> AsyncIterator[Connect]:
        """Each connection is a new client of the same nats-server; every test has its own
        stream and subject prefix, as separate apps sharing one server would."""
        name = f"t{uuid.uuid4().hex[:10]}"
        url = nats_engine.url(f"stream={name.upper()}&prefix={name}")
        async with connections(
            lambda: create_broker(url, app_dir=tmp_path, backoff=FAST)
        ) as connect:
            yield connect
