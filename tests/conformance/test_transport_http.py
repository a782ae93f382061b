"""The transport contract on HTTP/JSON."""

from __future__ import annotations

import pytest

from lumi.transports.http import HttpTransport
from tests.conformance.tls_contract import TlsTransportContract
from tests.conformance.transport_contract import NetworkTransportContract, SocketWire
from tests.tlskit import TlsKit


class TestHttpTransport(NetworkTransportContract):
    @pytest.fixture
    def wire(self) -> SocketWire:
        return SocketWire(HttpTransport())


class TestHttpTransportTls(TlsTransportContract):
    @pytest.fixture
    def wire(self, kit: TlsKit) -> SocketWire:
        return SocketWire(HttpTransport(), kit=kit)
