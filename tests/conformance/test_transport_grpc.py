"""The transport contract on gRPC (the generated .proto, grpc.aio)."""

from __future__ import annotations

import pytest

from lumi.transports.grpc import GrpcTransport
from tests.conformance.tls_contract import TlsTransportContract
from tests.conformance.transport_contract import NetworkTransportContract, SocketWire
from tests.tlskit import TlsKit


class TestGrpcTransport(NetworkTransportContract):
    @pytest.fixture
    def wire(self) -> SocketWire:
        return SocketWire(GrpcTransport(), bounded_ints=True)


class TestGrpcTransportTls(TlsTransportContract):
    requires_client_certificate = True

    @pytest.fixture
    def wire(self, kit: TlsKit) -> SocketWire:
        return SocketWire(GrpcTransport(), bounded_ints=True, kit=kit)
