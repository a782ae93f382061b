"""The transport contract on the in-process local channel (what ``lumi.App`` uses)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from lumi.pipeline.call import Handler
from lumi.transports.base import Channel
from lumi.transports.local import LocalChannel
from tests.conformance.transport_contract import TransportContract, Wire


class LocalWire(Wire):
    """Calls go straight into the served handler; there is no wire to limit bodies."""

    name = "local"
    enforces_body_limit = False

    def __init__(self) -> None:
        self.handler: Handler | None = None

    @contextlib.asynccontextmanager
    async def serve(self, handler: Handler) -> AsyncIterator[str]:
        self.handler = handler
        yield "local"

    def channel(self, endpoint: str) -> Channel:
        assert self.handler is not None
        return LocalChannel(self.handler)


class TestLocalTransport(TransportContract):
    @pytest.fixture
    def wire(self) -> Wire:
        return LocalWire()
