"""The transport contract on the HTTP/JSON transport."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from lumi.model.interface import ServiceInterface
from lumi.pipeline import Handler
from lumi.transports.base import Channel
from lumi.transports.http import HttpChannel, HttpServer
from tests.conformance.transport_contract import MAX_BODY, TransportContract, Wire


class HttpWire(Wire):
    name = "http"

    async def serve(
        self, handler: Handler, interfaces: dict[str, ServiceInterface], port: int = 0
    ) -> tuple[str, Callable[[float], Any]]:
        server = HttpServer(handler, interfaces=interfaces, port=port, max_body=MAX_BODY)
        await server.start()

        async def close(grace: float) -> None:
            server._grace = grace
            await server.aclose()

        return server.address, close

    def channel(self, address: str, iface: ServiceInterface) -> Channel:
        return HttpChannel([address])


class TestHttpTransport(TransportContract):
    @pytest.fixture
    def wire(self) -> Wire:
        """HTTP/JSON on 127.0.0.1."""
        return HttpWire()
