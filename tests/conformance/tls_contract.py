"""The transport contract over mutual TLS, written once for every transport that supports it.

:class:`TlsTransportContract` runs every case of :class:`NetworkTransportContract` with
certificates from a real CA (``tests.tlskit``) — each hop presenting its own service's — and
adds what only TLS has: the caller is the certificate's identity and never a claim; the end
user is believed only from an authenticated peer and follows three hops; a certificate from
another CA, one past its lifetime, a callee that is not the expected service and a client
speaking plain text are refused before any handler runs; renewing both sides' certificates
under steady load fails no call, and new connections get the new certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from typing import Any, ClassVar

import pydantic
import pytest

import lumi
from lumi.model.context import Metadata, User
from lumi.model.errors import LumiError
from lumi.pipeline.call import Call
from lumi.testing import wait_until
from lumi.transports.base import ChannelSettings
from lumi.transports.tls import Tls
from tests.conformance.rpc_services import Echo, Hop1, Hop2, Hop3, Seen
from tests.conformance.transport_contract import Harness, NetworkTransportContract, SocketWire
from tests.tlskit import TlsKit

_RESULT = pydantic.TypeAdapter(dict[str, Any])


class TlsTransportContract(NetworkTransportContract):
    """The network contract, over mTLS, plus the cases of the module docstring."""

    requires_client_certificate: ClassVar[bool] = False
    """True for a transport whose library cannot ask for a certificate without requiring one
    (grpcio): then a caller without one is refused at the handshake."""

    @pytest.fixture
    def kit(self, tmp_path: Any) -> TlsKit:
        return TlsKit(tmp_path)

    async def _echo(self, wire: SocketWire, harness: Harness) -> tuple[str, Any]:
        served = await harness.serve(wire, Echo)
        return served.address, served.host.instances["Echo"]

    def _channel(self, wire: SocketWire, address: str, tls: Tls | None, name: str = "Echo") -> Any:
        assert wire.kit is not None
        settings = (
            None
            if tls is None
            else ChannelSettings(tls=tls, server_name=wire.kit.server_name(name))
        )
        return wire.transport.channel(address, lumi.interface(Echo), settings)

    async def _refused(self, channel: Any, echo: Any, tag: str) -> LumiError:
        """Call ``Echo.slow`` through ``channel``: it must fail without reaching the handler."""
        body = b'{"seconds": 0, "tag": "%s"}' % tag.encode()
        try:
            with pytest.raises(LumiError) as caught:
                await channel.call(Call("Echo", "slow", body, Metadata(deadline=time.time() + 10)))
        finally:
            await channel.aclose()
        assert tag not in echo.runs, f"the handler ran for a refused caller ({tag})"
        return caught.value

    async def test_caller_is_the_certificate_not_the_claim(
        self, wire: SocketWire, harness: Harness
    ) -> None:
        """The callee's caller is the identity in the caller's verified certificate; the caller
        and user the metadata claims arrive only as far as the rules allow (the user, from an
        authenticated peer)."""
        address, _ = await self._echo(wire, harness)
        channel = harness.raw(wire, address, Echo)
        meta = Metadata(caller="spiffe://test/Impostor", user=User("ada", {"role": "buyer"}))
        got = _RESULT.validate_json(await channel.call(Call("Echo", "metadata", b"{}", meta)))
        assert got["caller"] == wire.caller_identity("Client") == "spiffe://test/Client"
        assert got["user"] == "ada"

    async def test_without_a_certificate_there_is_no_caller(
        self, wire: SocketWire, harness: Harness, kit: TlsKit
    ) -> None:
        """A TLS client with no certificate reaches the server as no one, and the user it
        claims is dropped (or, where the library must require certificates, it is refused
        with UNAUTHENTICATED before any handler runs)."""
        address, echo = await self._echo(wire, harness)
        channel = self._channel(wire, address, kit.anonymous())
        if self.requires_client_certificate:
            error = await self._refused(channel, echo, "anonymous")
            assert isinstance(error, lumi.Unauthenticated), error
            return
        try:
            meta = Metadata(caller="spiffe://test/Impostor", user=User("ada"))
            got = _RESULT.validate_json(await channel.call(Call("Echo", "metadata", b"{}", meta)))
        finally:
            await channel.aclose()
        assert got["caller"] is None and got["user"] is None

    async def test_a_certificate_from_another_ca_is_refused(
        self, wire: SocketWire, harness: Harness, kit: TlsKit
    ) -> None:
        """A certificate naming an identity of the app but signed by another CA is refused at
        the handshake: UNAUTHENTICATED, saying the CA is unknown; no handler runs."""
        address, echo = await self._echo(wire, harness)
        error = await self._refused(self._channel(wire, address, kit.foreign("Client")), echo, "f")
        assert isinstance(error, lumi.Unauthenticated), error

    async def test_an_expired_certificate_is_refused(
        self, wire: SocketWire, harness: Harness, kit: TlsKit
    ) -> None:
        """A certificate of the app's CA past its lifetime is refused: UNAUTHENTICATED; no
        handler runs."""
        address, echo = await self._echo(wire, harness)
        error = await self._refused(self._channel(wire, address, kit.expired("Client")), echo, "x")
        assert isinstance(error, lumi.Unauthenticated), error

    async def test_the_callee_must_be_the_expected_service(
        self, wire: SocketWire, harness: Harness, kit: TlsKit
    ) -> None:
        """A channel expecting another service refuses the server's certificate (a replica of
        one service cannot answer as another): UNAUTHENTICATED; no handler runs."""
        address, echo = await self._echo(wire, harness)
        channel = self._channel(wire, address, kit.tls("Client"), name="Inventory")
        error = await self._refused(channel, echo, "wrong-callee")
        assert isinstance(error, lumi.Unauthenticated), error

    async def test_a_plaintext_client_is_refused(self, wire: SocketWire, harness: Harness) -> None:
        """A client speaking plain text to a TLS port fails, and no handler runs."""
        address, echo = await self._echo(wire, harness)
        await self._refused(self._channel(wire, address, None), echo, "plain")

    async def test_the_user_follows_three_hops(self, wire: SocketWire, harness: Harness) -> None:
        """The end user of a call reaches every hop of Hop1 → Hop2 (HTTP) → Hop3, each relayed
        by an authenticated service."""
        from lumi.transports.http import HttpTransport

        http = wire.sibling(HttpTransport())
        hop3 = await harness.serve(wire, Hop3)
        hop2 = await harness.serve(http, Hop2, {"Hop3": (wire, hop3.address)})
        hop1 = await harness.serve(wire, Hop1, {"Hop2": (http, hop2.address)})
        channel = harness.raw(wire, hop1.address, Hop1)
        meta = Metadata(user=User("ada", {"role": "buyer"}), correlation_id="c-1")
        raw = await channel.call(Call("Hop1", "where", b"{}", meta))
        seen = pydantic.TypeAdapter(list[Seen]).validate_json(raw)
        assert [s.user for s in seen] == ["ada", "ada", "ada"]

    async def test_renewal_under_load_fails_no_call(
        self, wire: SocketWire, harness: Harness, kit: TlsKit
    ) -> None:
        """Both sides start with certificates valid for 3 s and renew them every second while
        calls flow without pause over kept-alive connections: no call fails; once the first
        certificates have expired, a new channel's new connections still work (each side now
        presents its renewed certificate) and are served the newest one."""
        kit.lifetime = 3.0
        started = time.monotonic()
        address, _ = await self._echo(wire, harness)
        channel = harness.raw(wire, address, Echo)
        done = asyncio.Event()
        counts = {"ok": 0}
        failures: list[BaseException] = []

        async def load(over: Any) -> None:
            n = 0
            while not done.is_set():
                n += 1
                try:
                    body = await over.call(
                        Call(
                            "Echo", "number", b'{"n": %d}' % n, Metadata(deadline=time.time() + 10)
                        )
                    )
                    assert body == str(n).encode()
                    counts["ok"] += 1
                except Exception as exc:
                    failures.append(exc)

        workers = [asyncio.create_task(load(channel)) for _ in range(8)]
        while time.monotonic() - started < 3.5:  # past the first certificates' lifetime
            await asyncio.sleep(1.0)
            kit.renew("Echo")
            kit.renew("Client")
        assert counts["ok"] > 20, counts
        fresh = harness.raw(wire, address, Echo)
        workers.append(asyncio.create_task(load(fresh)))
        counts["ok"] = 0
        await wait_until(lambda: counts["ok"] > 20, message="calls over new connections")
        done.set()
        await asyncio.gather(*workers)
        assert not failures, failures[:3]
        assert await _served_serial(address, kit) == kit.serial("Echo")


async def _served_serial(address: str, kit: TlsKit) -> int:
    """The serial number of the certificate a new TLS connection to ``address`` is served."""
    from cryptography import x509

    host, port = address.split("://", 1)[1].rsplit(":", 1)
    context = kit.tls("Client").client_context()
    _reader, writer = await asyncio.open_connection(
        host, int(port), ssl=context, server_hostname=kit.server_name("Echo")
    )
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    return x509.load_der_x509_certificate(der).serial_number
