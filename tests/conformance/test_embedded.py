"""The broker contract on the embedded SQLite log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lumi.brokers.embedded import EmbeddedBroker
from tests.conformance.broker_contract import FAST, BrokerContract, Connect, connections


class TestEmbeddedBroker(BrokerContract):
    @pytest.fixture
    async def connect(self, tmp_path: Path) -> AsyncIterator[Connect]:
        """Each connection opens the same log file, as separate processes would."""
        async with connections(
            lambda: EmbeddedBroker(tmp_path / "events.db", backoff=FAST)
        ) as connect:
            yield connect
