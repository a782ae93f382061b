"""The transport contract on gRPC (the generated .proto, grpc.aio)."""

from __future__ import annotations

import pytest

from lumi.transports.grpc import GrpcTransport
from tests.conformance.transport_contract import NetworkTransportContract, SocketWire


class TestGrpcTransport(NetworkTransportContract):
    @pytest.fixture
    def wire(self) -> SocketWire:
        return SocketWire(GrpcTransport(), bounded_ints=True)
