"""The transport contract on the Thrift transport: binary+framed and compact+buffered."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from lumi.model.interface import ServiceInterface
from lumi.pipeline import Handler
from lumi.transports.base import Channel
from lumi.transports.thrift import ThriftChannel, ThriftServer
from tests.conformance.transport_contract import MAX_BODY, TransportContract, Wire


class ThriftWire(Wire):
    name = "thrift"
    bounded_ints = True

    def __init__(
        self, protocol: str = "binary", framed: bool = True, package: str = "lumi"
    ) -> None:
        self.protocol = protocol
        self.framed = framed
        self.package = package

    async def serve(
        self, handler: Handler, interfaces: dict[str, ServiceInterface], port: int = 0
    ) -> tuple[str, Callable[[float], Any]]:
        server = ThriftServer(
            handler, interfaces=interfaces, port=port, max_message=MAX_BODY, package=self.package
        )
        await server.start()

        async def close(grace: float) -> None:
            server._grace = grace
            await server.aclose()

        return server.address, close

    def channel(self, address: str, iface: ServiceInterface) -> Channel:
        return ThriftChannel(address, interface=iface, protocol=self.protocol, framed=self.framed)


class TestThriftBinaryFramed(TransportContract):
    @pytest.fixture
    def wire(self) -> Wire:
        """Thrift binary protocol, framed transport."""
        return ThriftWire("binary", framed=True)


class TestThriftCompactBuffered(TransportContract):
    @pytest.fixture
    def wire(self) -> Wire:
        """Thrift compact protocol, buffered (unframed) transport."""
        return ThriftWire("compact", framed=False)
