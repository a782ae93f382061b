"""The transport contract on HTTP/JSON."""

from __future__ import annotations

import pytest

from lumi.transports.http import HttpTransport
from tests.conformance.transport_contract import NetworkTransportContract, SocketWire


class TestHttpTransport(NetworkTransportContract):
    @pytest.fixture
    def wire(self) -> SocketWire:
        return SocketWire(HttpTransport())
