"""The seam proof, part 1: the toy backends of tests/plugins — one module each, outside src/,
found only through entry points — pass their axis's conformance suite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lumi import transports
from lumi.backends import RUNTIMES
from lumi.brokers import create_broker
from lumi.runtimes.base import Runtime
from tests.conformance.broker_contract import FAST, BrokerContract, Connect, connections
from tests.conformance.runtime_contract import RuntimeContract
from tests.conformance.tls_contract import TlsTransportContract
from tests.conformance.transport_contract import NetworkTransportContract, SocketWire
from tests.tlskit import TlsKit


class TestJsonlTransport(NetworkTransportContract):
    @pytest.fixture
    def wire(self) -> SocketWire:
        """The transport registered as "jsonl" by the toy distribution's entry point."""
        return SocketWire(transports.get("jsonl"))


class TestJsonlTransportTls(TlsTransportContract):
    @pytest.fixture
    def wire(self, kit: TlsKit) -> SocketWire:
        """The toy transport over mTLS, through the same seam."""
        return SocketWire(transports.get("jsonl"), kit=kit)


class TestToyBroker(BrokerContract):
    @pytest.fixture
    async def connect(self, tmp_path: Path) -> AsyncIterator[Connect]:
        """Each connection is a separate broker object on one shared "toy://" backend."""
        name = f"toy://{tmp_path.name}"
        async with connections(lambda: create_broker(name, app_dir=tmp_path, backoff=FAST)) as c:
            yield c


class TestThreadRuntime(RuntimeContract):
    @pytest.fixture
    def runtime(self) -> Runtime:
        """The runtime registered as "thread" by the toy distribution's entry point."""
        runtime: Runtime = RUNTIMES.load("thread")()
        return runtime
