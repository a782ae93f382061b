"""The transport contract on Thrift: binary+framed and compact+buffered channels, one server."""

from __future__ import annotations

import pytest

from lumi.transports.thrift import ThriftTransport
from tests.conformance.tls_contract import TlsTransportContract
from tests.conformance.transport_contract import NetworkTransportContract, SocketWire
from tests.tlskit import TlsKit


class TestThriftBinaryFramed(NetworkTransportContract):
    @pytest.fixture
    def wire(self) -> SocketWire:
        return SocketWire(ThriftTransport(protocol="binary", framed=True), bounded_ints=True)


class TestThriftCompactBuffered(NetworkTransportContract):
    @pytest.fixture
    def wire(self) -> SocketWire:
        return SocketWire(ThriftTransport(protocol="compact", framed=False), bounded_ints=True)


class TestThriftTls(TlsTransportContract):
    @pytest.fixture
    def wire(self, kit: TlsKit) -> SocketWire:
        return SocketWire(
            ThriftTransport(protocol="binary", framed=True), bounded_ints=True, kit=kit
        )
