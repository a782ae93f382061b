"""The transport contract on Thrift: binary+framed and compact+buffered channels, one server."""

from __future__ import annotations

import pytest

from lumi.transports.thrift import ThriftTransport
from tests.conformance.transport_contract import NetworkTransportContract, SocketWire


class TestThriftBinaryFramed(NetworkTransportContract):
    @pytest.fixture
    def wire(self) -> SocketWire:
        return SocketWire(ThriftTransport(protocol="binary", framed=True), bounded_ints=True)


class TestThriftCompactBuffered(NetworkTransportContract):
    @pytest.fixture
    def wire(self) -> SocketWire:
        return SocketWire(ThriftTransport(protocol="compact", framed=False), bounded_ints=True)
