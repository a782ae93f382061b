"""The transport contract on the gRPC transport."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from lumi.model.interface import ServiceInterface
from lumi.pipeline import Handler
from lumi.transports.base import Channel
from lumi.transports.grpc import GrpcChannel, GrpcServer
from tests.conformance.transport_contract import MAX_BODY, TransportContract, Wire


class GrpcWire(Wire):
    name = "grpc"
    bounded_ints = True
    package = "lumi"

    async def serve(
        self, handler: Handler, interfaces: dict[str, ServiceInterface], port: int = 0
    ) -> tuple[str, Callable[[float], Any]]:
        server = GrpcServer(
            handler, interfaces=interfaces, port=port, max_message=MAX_BODY, package=self.package
        )
        await server.start()

        async def close(grace: float) -> None:
            server._grace = grace
            await server.aclose()

        return server.address, close

    def channel(self, address: str, iface: ServiceInterface) -> Channel:
        return GrpcChannel(address, interface=iface, package=self.package)


class TestGrpcTransport(TransportContract):
    @pytest.fixture
    def wire(self) -> Wire:
        """gRPC on 127.0.0.1, the generated .proto."""
        return GrpcWire()
