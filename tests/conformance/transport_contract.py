"""The transport contract, written once: every transport's test module subclasses it.

A subclass provides one fixture, ``wire``: a :class:`Wire` that serves a handler (the real
dispatcher of the :class:`Probe` service, with the runtime's server middleware) and makes
channels to it. A network :class:`~lumi.transports.base.Transport` subclasses
:class:`NetworkTransportContract` with a :class:`SocketWire` (bind, serve on the socket, a
channel per endpoint, readiness probes); the in-process local channel subclasses
:class:`TransportContract` with a wire of its own.
Every case calls through the real client (:class:`lumi.Client`), so what is checked is what a
service sees.

On top of those, :class:`_DeepContract` serves the services of ``rpc_services`` through
:meth:`Wire.serve_service`: every JSON-like type round-trips or is refused with
INVALID_ARGUMENT (never changed: ``Wire.bounded_ints`` says whether ints travel as int64), every
error code comes back with message and details, metadata reaches the handler, correlation holds
across a 3-hop chain mixing this wire with HTTP, and a restart mid-call is retried only for
idempotent methods.

A :class:`SocketWire` given a :class:`~tests.tlskit.TlsKit` serves and calls over mTLS: every
case then runs with certificates, each hop's channel presenting its own service's identity,
and the cases that read the caller check it is the certificate's (``Wire.caller_identity``),
never what the metadata claimed. ``tls_contract.py`` adds the cases only TLS has.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import enum
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pydantic
import pytest

import lumi
from lumi.brokers.memory import MemoryBroker
from lumi.model.context import Metadata
from lumi.model.errors import LumiError, NotSent, StatusCode
from lumi.model.interface import ServiceInterface
from lumi.model.service import Service
from lumi.pipeline.call import Call, Handler, compose
from lumi.pipeline.client import Client
from lumi.runtime_services.resilience.balancer import Balancer
from lumi.runtime_services.resilience.breaker import Breakers
from lumi.runtimes import stack
from lumi.runtimes.host import Host
from lumi.testing import wait_until
from lumi.transports.base import Channel, ChannelSettings, Health, ServerSettings, Transport
from tests.conformance.rpc_services import Color, Echo, Hop1, Hop2, Hop3, Inner, Payload, Priority
from tests.tlskit import TlsKit

LIMIT = 64 * 1024  # the body limit servers under test get
INT64 = (-(2**63), 2**63 - 1)
MINUS_FIVE = datetime.timezone(datetime.timedelta(hours=-5))


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Item(pydantic.BaseModel):
    name: str
    count: int = 0
    tags: list[str] = []
    parent: Item | None = None


class Scalars(pydantic.BaseModel):
    b: bool
    i: int
    f: float
    s: str
    raw: str


class Shapes(pydantic.BaseModel):
    when: str
    colour: str
    item: Item
    items: list[Item]
    by_name: dict[str, int]
    maybe: int | None
    either: int | str


class Seen(pydantic.BaseModel):
    correlation_id: str | None
    traceparent: str | None


class Probe(lumi.Service):
    """Everything a transport must carry, and every way a call can end."""

    @lumi.api(idempotent=True)
    async def scalars(self, b: bool, i: int, f: float, s: str, raw: bytes) -> Scalars:
        return Scalars(b=b, i=i, f=f, s=s, raw=raw.hex())

    @lumi.api(idempotent=True)
    async def shapes(
        self,
        when: datetime.datetime,
        colour: Colour,
        item: Item,
        items: list[Item],
        by_name: dict[str, int],
        maybe: int | None = None,
        either: int | str = 0,
    ) -> Shapes:
        return Shapes(
            when=when.isoformat(),
            colour=colour.value,
            item=item,
            items=items,
            by_name=by_name,
            maybe=maybe,
            either=either,
        )

    @lumi.api(idempotent=True)
    async def item(self, item: Item) -> Item:
        return item

    @lumi.api(idempotent=True)
    async def blob(self, data: bytes) -> bytes:
        return data[::-1]

    @lumi.api
    async def fail(self, code: str, message: str) -> None:
        raise lumi.LumiError.for_code(StatusCode(code))(message, {"code": code, "n": 1})

    @lumi.api(idempotent=True)
    async def context(self) -> Seen:
        meta = lumi.context().metadata  # type: ignore[union-attr]
        return Seen(correlation_id=meta.correlation_id, traceparent=meta.traceparent)

    @lumi.api
    async def sleep(self, seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds


class Wire:
    """How the suite reaches one transport: serve a handler, make channels to it."""

    name = "?"
    enforces_body_limit = True
    bounded_ints = False  # True: ints travel as int64, and beyond is refused

    async def serve_service(
        self,
        handler: Handler,
        interfaces: dict[str, ServiceInterface],
        port: int = 0,
        grace: float = 0.5,
    ) -> tuple[str, Callable[[], Awaitable[None]]]:
        """Serve ``handler`` for ``interfaces`` on ``port`` (0: any); (endpoint, close)."""
        raise NotImplementedError

    def channel_to(self, endpoint: str, iface: ServiceInterface, caller: str = "Client") -> Channel:
        """A channel to ``endpoint`` for calls to ``iface``, made by the service ``caller``."""
        raise NotImplementedError

    def caller_identity(self, caller: str) -> str | None:
        """Who a callee sees calling when ``caller``'s channel calls it: no one on a plain wire
        (a caller's claim is never believed), its certificate's identity over mTLS."""
        return None

    def sibling(self, transport: Transport) -> Wire:
        """A wire of ``transport`` that calls and serves like this one (plain, or mTLS with the
        same certificates)."""
        return SocketWire(transport)

    @contextlib.asynccontextmanager
    async def serve(self, handler: Handler) -> AsyncIterator[str]:
        """Serve ``handler``; yields the endpoint."""
        raise NotImplementedError
        yield ""

    def channel(self, endpoint: str) -> Channel:
        raise NotImplementedError


class SocketWire(Wire):
    """A network transport: bind a socket, serve on it, one channel per endpoint."""

    def __init__(
        self, transport: Transport, *, bounded_ints: bool = False, kit: TlsKit | None = None
    ) -> None:
        self.transport = transport
        self.name = transport.name + ("+mtls" if kit else "")
        self.bounded_ints = bounded_ints
        self.kit = kit
        self.health: Health | None = None

    def server_settings(self, service: str, **kwargs: Any) -> ServerSettings:
        tls = self.kit.tls(service) if self.kit else None
        return ServerSettings(tls=tls, **kwargs)

    def channel_settings(self, service: str, caller: str) -> ChannelSettings | None:
        if self.kit is None:
            return None
        return ChannelSettings(tls=self.kit.tls(caller), server_name=self.kit.server_name(service))

    def caller_identity(self, caller: str) -> str | None:
        return self.kit.identity(caller) if self.kit else None

    def sibling(self, transport: Transport) -> Wire:
        return SocketWire(transport, kit=self.kit)

    async def probe(self, endpoint: str, timeout: float = 2.0) -> None:
        """The transport's readiness probe, connecting as this wire's channels do."""
        settings = self.channel_settings("Probe", "Client")
        await self.transport.probe(endpoint, timeout=timeout, settings=settings)

    async def serve_service(
        self,
        handler: Handler,
        interfaces: dict[str, ServiceInterface],
        port: int = 0,
        grace: float = 0.5,
    ) -> tuple[str, Callable[[], Awaitable[None]]]:
        sock = self.transport.bind("127.0.0.1", port)
        settings = self.server_settings(
            next(iter(interfaces)),
            interfaces=interfaces,
            health=Health(),
            max_body=LIMIT,
            grace_period=grace,
        )
        server = self.transport.server(handler, sock, settings)
        await server.start()

        async def close() -> None:
            await server.aclose()
            sock.close()

        return server.endpoint, close

    def channel_to(self, endpoint: str, iface: ServiceInterface, caller: str = "Client") -> Channel:
        return self.transport.channel(endpoint, iface, self.channel_settings(iface.name, caller))

    @contextlib.asynccontextmanager
    async def serve(self, handler: Handler) -> AsyncIterator[str]:
        sock = self.transport.bind("127.0.0.1", 0)
        self.health = Health()
        settings = self.server_settings(
            "Probe",
            interfaces={"Probe": lumi.interface(Probe)},
            health=self.health,
            max_body=LIMIT,
            grace_period=5,
        )
        server = self.transport.server(handler, sock, settings)
        await server.start()
        try:
            yield server.endpoint
        finally:
            await server.aclose()
            sock.close()

    def channel(self, endpoint: str) -> Channel:
        return self.channel_to(endpoint, lumi.interface(Probe))

    def dead_endpoint(self) -> str:
        """An endpoint where nothing listens."""
        sock = self.transport.bind("127.0.0.1", 0)
        endpoint = self.transport.endpoint_of(sock)
        sock.close()
        return endpoint


@dataclasses.dataclass
class Served:
    host: Host
    address: str
    close: Callable[[], Any]
    channels: list[Channel]


class Harness:
    """Hosts services on wires, each with the runtime's middleware, and makes clients."""

    def __init__(self) -> None:
        self.runtime = stack.RuntimeServices()
        self.served: list[Served] = []
        self.channels: list[Channel] = []
        self.broker = MemoryBroker()

    async def serve(
        self,
        wire: Wire,
        service: type[Service],
        downstream: dict[str, tuple[Wire, str]] | None = None,
        port: int = 0,
        grace: float = 0.5,
    ) -> Served:
        """Host ``service`` on ``wire``; its capabilities call ``downstream[name]``."""
        if not self.broker.started:
            await self.broker.start()
        name = lumi.interface(service).name
        channels: list[Channel] = []

        def channel_for(callee: str) -> Handler:
            callee_wire, address = (downstream or {})[callee]
            iface = next(lumi.interface(c) for c in (Echo, Hop1, Hop2, Hop3) if c.name == callee)
            channel = callee_wire.channel_to(address, iface, caller=name)
            channels.append(channel)
            return compose(channel.call, stack.client_middlewares(name, self.runtime))

        host = Host(
            [service],
            broker=self.broker,
            channel_for=channel_for,
            middlewares=stack.server_middlewares(name, self.runtime),
            external=lumi.interface(service).requires,
        )
        await host.start()
        address, close = await wire.serve_service(
            host.dispatcher.handle, {name: lumi.interface(service)}, port, grace
        )
        served = Served(host, address, close, channels)
        self.served.append(served)
        return served

    def client(self, wire: Wire, address: str, service: type[Service]) -> Any:
        channel = wire.channel_to(address, lumi.interface(service))
        self.channels.append(channel)
        invoke = compose(channel.call, stack.client_middlewares(None, self.runtime))
        return Client.for_service(service, invoke)

    def raw(self, wire: Wire, address: str, service: type[Service]) -> Channel:
        channel = wire.channel_to(address, lumi.interface(service))
        self.channels.append(channel)
        return channel

    async def stop(self, served: Served) -> None:
        await served.close()
        await served.host.stop()
        for channel in served.channels:
            await channel.aclose()
        self.served.remove(served)

    async def aclose(self) -> None:
        for channel in self.channels:
            await channel.aclose()
        for served in list(self.served):
            await self.stop(served)
        await self.broker.aclose()


def payload(**changes: Any) -> Payload:
    base: dict[str, Any] = {
        "text": "héllo wörld ✓ 日本語 \U0001f600",
        "count": 42,
        "ratio": 0.1,
        "flag": True,
        "raw": bytes(range(256)),
        "when": datetime.datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=datetime.UTC),
        "day": datetime.date(2026, 12, 31),
        "color": Color.SKY_BLUE,
        "priority": Priority.HIGH,
        "inner": Inner(label="a", weight=2.5, child=Inner(label="b")),
        "inners": [Inner(label="x"), Inner(label="y", weight=-0.5)],
        "tags": {"one": 1, "zwei": 2, "": 0},
        "names": ["", "a", "ü"],
        "maybe": 7,
        "note": None,
        "choice": [1, 2, 3],
        "grid": [[1, 2], [], [3]],
    }
    base.update(changes)
    return Payload(**base)


class _DeepContract:
    """Values at every edge, every failure, restarts and hops: the cases on services of their
    own (``rpc_services``), served through :meth:`Wire.serve_service`."""

    @pytest.fixture
    async def harness(self) -> AsyncIterator[Harness]:
        h = Harness()
        try:
            yield h
        finally:
            await h.aclose()

    @pytest.fixture
    async def echo(self, wire: Wire, harness: Harness) -> Any:
        served = await harness.serve(wire, Echo)
        return harness.client(wire, served.address, Echo)

    # -- types -------------------------------------------------------------------------------

    async def test_every_type_round_trips(self, echo: Any) -> None:
        """A model using every JSON-like type comes back equal, field by field."""
        sent = payload()
        assert await echo.echo(p=sent) == sent

    @pytest.mark.parametrize(
        "changes",
        [
            {"inners": [], "tags": {}, "names": [], "grid": []},
            {"maybe": None, "note": "", "choice": "text", "raw": b""},
            {"choice": 0, "count": 0, "ratio": 0.0, "flag": False, "text": ""},
            {"color": Color.RED, "priority": Priority.LOW, "inner": Inner(label="")},
            {"when": datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)},
            {"when": datetime.datetime(2026, 1, 1, 12, tzinfo=MINUS_FIVE)},
            {"count": INT64[1], "tags": {"min": INT64[0]}},
            {"ratio": 1e308, "inners": [Inner(label="tiny", weight=5e-324)]},
        ],
        ids=["empty", "nulls", "zeros", "enums", "epoch", "offset", "int64-edge", "doubles"],
    )
    async def test_edge_values_round_trip(self, echo: Any, changes: dict[str, Any]) -> None:
        """Empty collections, nulls, zero values, every enum, datetimes with offsets (the same
        instant) and numbers at the edge of their wire types come back equal."""
        sent = payload(**changes)
        assert await echo.echo(p=sent) == sent

    @pytest.mark.parametrize("n", [0, -1, INT64[0], INT64[1], INT64[1] + 1, INT64[0] - 1, 2**80])
    async def test_ints_are_exact_or_refused(self, wire: Wire, echo: Any, n: int) -> None:
        """An int comes back exactly, or — beyond int64 on a wire that carries int64 — the call
        is refused with INVALID_ARGUMENT; it is never truncated."""
        fits = INT64[0] <= n <= INT64[1]
        if fits or not wire.bounded_ints:
            assert await echo.number(n=n) == n
        else:
            with pytest.raises(lumi.InvalidArgument):
                await echo.number(n=n)

    @pytest.mark.parametrize("v", [None, 0, -5, "", "text", [], [1, 2, 3], 2**53, 3])
    async def test_union_values_round_trip(self, echo: Any, v: Any) -> None:
        """Every arm of a union (and null) comes back as the same value and type."""
        got = await echo.union(v=v)
        assert got == v and type(got) is type(v)

    async def test_union_int_beyond_2_53_is_exact_or_refused(self, echo: Any) -> None:
        """A big int inside a union is exact, or refused (never rounded by a double)."""
        try:
            got = await echo.union(v=2**53 + 1)
        except lumi.InvalidArgument:
            return
        assert got == 2**53 + 1

    async def test_defaults_apply_when_arguments_are_omitted(self, echo: Any) -> None:
        """Omitted optional parameters take their declared defaults; given ones are kept."""
        got = await echo.defaults()
        assert got.model_dump() == {"a": None, "b": "b", "c": [], "d": None, "e": Color.GREEN}
        got = await echo.defaults(a=0, b="", c=[1], d={"k": "v"}, e=Color.RED)
        assert got.model_dump() == {"a": 0, "b": "", "c": [1], "d": {"k": "v"}, "e": Color.RED}

    async def test_none_result(self, echo: Any) -> None:
        """A method returning None returns None."""
        assert await echo.nothing() is None

    async def test_wrong_types_are_invalid_argument(self, wire: Wire, harness: Harness) -> None:
        """Arguments of the wrong type fail with INVALID_ARGUMENT naming the field, and the
        server keeps serving."""
        served = await harness.serve(wire, Echo)
        channel = harness.raw(wire, served.address, Echo)
        call = Call("Echo", "number", b'{"n": "seven"}', Metadata())
        with pytest.raises(lumi.InvalidArgument, match="n"):
            await channel.call(call)
        assert await channel.call(Call("Echo", "number", b'{"n": 7}', Metadata())) == b"7"

    # -- errors ------------------------------------------------------------------------------

    @pytest.mark.parametrize("code", list(StatusCode))
    async def test_every_error_code_maps_back(self, echo: Any, code: StatusCode) -> None:
        """A handler's error reaches the caller as the same type with message and details."""
        details = {"why": "ünïcode", "n": [1, 2.5, None, True], "nested": {"k": "v"}}
        with pytest.raises(LumiError) as caught:
            await echo.fail(
                code=code.value, message=f"boom {code.value} ✓", details=json.dumps(details)
            )
        error = caught.value
        assert type(error) is LumiError.for_code(code)
        assert error.message == f"boom {code.value} ✓"
        assert error.details == details

    async def test_error_without_details(self, echo: Any) -> None:
        """An error with no details has None as details."""
        with pytest.raises(lumi.NotFound) as caught:
            await echo.fail(code="NOT_FOUND", message="nope")
        assert caught.value.details is None

    async def test_unknown_method_is_not_found(self, wire: Wire, harness: Harness) -> None:
        """Calling a method the service does not have fails with NOT_FOUND."""
        served = await harness.serve(wire, Echo)
        channel = harness.raw(wire, served.address, Echo)
        with pytest.raises(lumi.NotFound):
            await channel.call(Call("Echo", "no_such_method", b"{}", Metadata()))

    # -- metadata and deadlines --------------------------------------------------------------

    async def test_metadata_reaches_the_handler(self, wire: Wire, harness: Harness) -> None:
        """Correlation id, traceparent, idempotency key and deadline arrive; the caller the
        metadata claims does not: the callee's caller is who the wire authenticated."""
        served = await harness.serve(wire, Echo)
        channel = harness.raw(wire, served.address, Echo)
        trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        meta = Metadata(
            correlation_id="corr-123",
            traceparent=trace,
            idempotency_key="key-9",
            caller="Tester",
            deadline=time.time() + 20,
        )
        got = pydantic.TypeAdapter(dict[str, Any]).validate_json(
            await channel.call(Call("Echo", "metadata", b"{}", meta))
        )
        assert got["correlation_id"] == "corr-123"
        assert got["traceparent"].split("-")[1] == trace.split("-")[1]
        assert got["idempotency_key"] == "key-9"
        assert got["caller"] == wire.caller_identity("Client")
        assert 15 < got["remaining"] <= 20

    async def test_correlation_across_three_hops(self, wire: Wire, harness: Harness) -> None:
        """One correlation id and trace follow a call through Hop1 → Hop2 → Hop3, where the
        middle hop is HTTP and the others this wire; each hop's caller is the previous hop's
        authenticated identity (no one, on a plain wire)."""
        from lumi.transports.http import HttpTransport

        http = wire.sibling(HttpTransport())
        hop3 = await harness.serve(wire, Hop3)
        hop2 = await harness.serve(http, Hop2, {"Hop3": (wire, hop3.address)})
        hop1 = await harness.serve(wire, Hop1, {"Hop2": (http, hop2.address)})
        client = harness.client(wire, hop1.address, Hop1)
        seen = await client.where()
        assert [s.service for s in seen] == ["Hop1", "Hop2", "Hop3"]
        assert len({s.correlation_id for s in seen}) == 1 and seen[0].correlation_id
        assert len({s.trace_id for s in seen}) == 1 and seen[0].trace_id
        callers = [wire.caller_identity("Client"), http.caller_identity("Hop1")]
        assert [s.caller for s in seen] == [*callers, wire.caller_identity("Hop2")]

    async def test_deadline_reaches_a_raw_channel(self, wire: Wire, harness: Harness) -> None:
        """A call whose deadline passes fails with DEADLINE_EXCEEDED soon after it."""
        served = await harness.serve(wire, Echo)
        channel = harness.raw(wire, served.address, Echo)
        meta = Metadata(deadline=time.time() + 0.3)
        started = time.monotonic()
        with pytest.raises(lumi.DeadlineExceeded):
            await channel.call(Call("Echo", "slow", b'{"seconds": 5, "tag": "d"}', meta))
        assert time.monotonic() - started < 2.0

    # -- limits and load ---------------------------------------------------------------------

    async def test_payload_near_the_limit_passes(self, echo: Any) -> None:
        """A request just under the size limit is served."""
        data = "x" * (LIMIT - 1024)
        assert await echo.size(data=data) == len(data)

    async def test_payload_over_the_limit_fails_cleanly(self, wire: Wire, harness: Harness) -> None:
        """A request over the size limit fails with RESOURCE_EXHAUSTED and the server keeps
        serving (in-process, where nothing travels, there is no limit to hit)."""
        served = await harness.serve(wire, Echo)
        client = harness.client(wire, served.address, Echo)
        data = "x" * (LIMIT * 2)
        if wire.enforces_body_limit:
            with pytest.raises(lumi.ResourceExhausted):
                await client.size(data=data)
        else:
            assert await client.size(data=data) == len(data)
        assert await client.size(data="ok") == 2

    async def test_200_concurrent_calls_through_the_pipeline(self, echo: Any) -> None:
        """200 calls in flight at once each get their own answer."""
        results = await asyncio.gather(*(echo.number(n=i) for i in range(200)))
        assert results == list(range(200))

    # -- restarts ----------------------------------------------------------------------------

    async def test_restart_retries_only_idempotent_calls(
        self, wire: Wire, harness: Harness
    ) -> None:
        """Calls in flight when the server dies: idempotent ones are retried against the
        restarted server and succeed; non-idempotent ones fail and ran exactly once."""
        served = await harness.serve(wire, Echo, grace=0)
        port = int(served.address.rsplit(":", 1)[1]) if ":" in served.address else 0
        client = harness.client(wire, served.address, Echo)
        idempotent = [
            asyncio.create_task(client.slow_idempotent(seconds=0.5, tag=f"i{n}")) for n in range(3)
        ]
        once = [asyncio.create_task(client.slow(seconds=0.5, tag=f"o{n}")) for n in range(3)]
        echo = served.host.instances["Echo"]
        await wait_until(lambda: len(echo.runs) == 6, message="6 calls running")
        await harness.stop(served)
        restarted = await harness.serve(wire, Echo, port=port)
        assert restarted.address == served.address
        results = await asyncio.gather(*idempotent, *once, return_exceptions=True)
        assert results[:3] == [f"i{n}" for n in range(3)]
        assert all(isinstance(r, LumiError) for r in results[3:]), results[3:]
        again = restarted.host.instances["Echo"]
        assert not any(tag.startswith("o") for tag in again.runs)
        assert sorted(again.runs) == [f"i{n}" for n in range(3)]


class TransportContract(_DeepContract):
    """The cases every transport passes (with those of :class:`_DeepContract`)."""

    @pytest.fixture
    def wire(self) -> Wire:
        raise NotImplementedError("a subclass provides the wire")

    @pytest.fixture
    async def served(self, wire: Wire) -> AsyncIterator[tuple[Host, str]]:
        """The Probe service hosted with the runtime's server middleware, served by ``wire``."""
        from lumi.runtimes import stack

        services = stack.RuntimeServices()
        host = Host(
            [Probe],
            broker=MemoryBroker(),
            channel_for=lambda name: None,  # type: ignore[arg-type, return-value]
            middlewares=stack.server_middlewares("Probe", services),
        )
        await host.start()
        try:
            async with wire.serve(host.dispatcher.handle) as endpoint:
                yield host, endpoint
        finally:
            await host.stop()

    @pytest.fixture
    async def client(self, wire: Wire, served: tuple[Host, str]) -> AsyncIterator[Any]:
        channel = wire.channel(served[1])
        try:
            yield Client.for_service(Probe, channel.call)
        finally:
            await channel.aclose()

    async def test_scalars_and_bytes_round_trip(self, client: Any) -> None:
        """bool, int (at the int64 edges), float, unicode str and bytes cross unchanged."""
        for i in (0, -1, 2**63 - 1, -(2**63)):
            got = await client.scalars(b=True, i=i, f=-0.5, s="héllo ✓ 漢字", raw=b"\x00\xffz")
            assert got == Scalars(b=True, i=i, f=-0.5, s="héllo ✓ 漢字", raw="00ff7a")

    async def test_structured_values_round_trip(self, client: Any) -> None:
        """Datetimes, enums, nested and recursive models, lists, maps, optionals, unions."""
        when = datetime.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=datetime.UTC)
        nested = Item(name="a", count=2, tags=["x", ""], parent=Item(name="root"))
        got = await client.shapes(
            when=when,
            colour=Colour.BLUE,
            item=nested,
            items=[],
            by_name={},
            maybe=None,
            either="text",
        )
        assert got.when == when.isoformat() and got.colour == "blue"
        assert got.item == nested and got.items == [] and got.by_name == {}
        assert got.maybe is None and got.either == "text"
        again = await client.shapes(
            when=when, colour=Colour.RED, item=Item(name="b"), items=[nested], by_name={"k": 7}
        )
        assert again.items == [nested] and again.by_name == {"k": 7} and again.either == 0
        assert await client.item(item=nested) == nested

    async def test_every_error_code_maps_back_to_itself(self, client: Any) -> None:
        """Each status code raised by a handler reaches the caller as its own type, with the
        message and details."""
        for code in StatusCode:
            if code is StatusCode.CANCELLED:
                continue  # a cancellation is the caller's own act, not a handler's answer
            with pytest.raises(lumi.LumiError) as info:
                await client.fail(code=code.value, message=f"because {code.value}")
            error = info.value
            assert type(error) is lumi.LumiError.for_code(code), code
            assert error.message == f"because {code.value}"
            assert error.details == {"code": code.value, "n": 1}

    async def test_bad_arguments_are_invalid_argument(self, wire: Wire, served: tuple) -> None:
        """Arguments that do not validate are INVALID_ARGUMENT naming the parameter."""
        channel = wire.channel(served[1])
        try:
            with pytest.raises(lumi.InvalidArgument, match="count"):
                await channel.call(
                    Call("Probe", "item", b'{"item": {"name": "x", "count": "many"}}', Metadata())
                )
            with pytest.raises(lumi.NotFound, match="no method 'nope'"):
                await channel.call(Call("Probe", "nope", b"{}", Metadata()))
        finally:
            await channel.aclose()

    async def test_metadata_travels(self, wire: Wire, served: tuple) -> None:
        """The correlation id and traceparent sent are the ones the handler sees."""
        channel = wire.channel(served[1])
        traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        try:
            meta = Metadata(correlation_id="corr-123", traceparent=traceparent)
            got = await channel.call(Call("Probe", "context", b"{}", meta))
        finally:
            await channel.aclose()
        seen = Seen.model_validate_json(got)
        assert seen.correlation_id == "corr-123"
        assert (seen.traceparent or "")[:36] == traceparent[:36]  # same trace, the server's span

    @pytest.mark.parametrize(
        "metadata",
        [
            Metadata(correlation_id="x" * 10_000),
            Metadata(correlation_id="a\x01b"),
            Metadata(correlation_id=""),
            Metadata(idempotency_key="k" * 300),
            Metadata(idempotency_key="in valid"),
            Metadata(deadline=float("nan")),
            Metadata(deadline=float("inf")),
        ],
        ids=["long-id", "control-char", "empty-id", "long-key", "space", "nan", "inf"],
    )
    async def test_bad_metadata_is_invalid_argument(
        self, wire: Wire, served: tuple, metadata: Metadata
    ) -> None:
        """Metadata that breaks the shared limits (lumi.pipeline.edge) is INVALID_ARGUMENT on
        every transport — refused by the channel or by the server's edge, never UNAVAILABLE —
        and the method does not run."""
        channel = wire.channel(served[1])
        try:
            with pytest.raises(lumi.InvalidArgument):
                await channel.call(Call("Probe", "context", b"{}", metadata))
            longest = Metadata(correlation_id="c" * 128)  # the limit itself is fine
            seen = Seen.model_validate_json(
                await channel.call(Call("Probe", "context", b"{}", longest))
            )
            assert seen.correlation_id == "c" * 128
        finally:
            await channel.aclose()

    async def test_deadline_is_honoured(self, client: Any) -> None:
        """A call that outlives its deadline ends with DEADLINE_EXCEEDED, promptly."""
        started = asyncio.get_running_loop().time()
        with pytest.raises(lumi.DeadlineExceeded):
            await client.invoke("sleep", {"seconds": 5}, timeout=0.2)
        assert asyncio.get_running_loop().time() - started < 3

    async def test_payloads_near_and_over_the_limit(self, wire: Wire, client: Any) -> None:
        """A payload just under the body limit passes; one over it fails cleanly as
        RESOURCE_EXHAUSTED and the connection keeps serving."""
        near = b"z" * ((LIMIT - 200) * 3 // 4)  # base64 grows it by a third
        assert await client.blob(data=near) == near[::-1]
        if wire.enforces_body_limit:
            with pytest.raises(lumi.ResourceExhausted):
                await client.blob(data=b"z" * LIMIT)
        assert await client.blob(data=b"ok") == b"ko"

    async def test_200_concurrent_calls(self, client: Any) -> None:
        """200 calls in flight at once through one channel all get their own answer."""
        results = await asyncio.gather(
            *(client.scalars(b=False, i=n, f=0.0, s=str(n), raw=b"") for n in range(200))
        )
        assert [r.i for r in results] == list(range(200))


class NetworkTransportContract(TransportContract):
    """The cases every transport with endpoints passes, on top of the common ones."""

    @pytest.fixture
    def wire(self) -> SocketWire:
        raise NotImplementedError("a subclass provides the wire")

    async def test_nothing_listening_is_not_sent(self, wire: SocketWire) -> None:
        """A call to an endpoint where nothing listens is NotSent (UNAVAILABLE), so a balancer
        may try another replica; through a balancer it is UNAVAILABLE naming the service."""
        dead = wire.dead_endpoint()
        channel = wire.channel(dead)
        with pytest.raises(NotSent):
            await channel.call(Call("Probe", "context", b"{}", Metadata()))
        balancer = Balancer("Probe", [channel], breakers=Breakers())
        with pytest.raises(lumi.Unavailable, match="cannot reach Probe"):
            await balancer(Call("Probe", "context", b"{}", Metadata()))
        await balancer.aclose()

    async def test_probe_follows_readiness(self, wire: SocketWire, served: tuple) -> None:
        """probe() passes while the server is ready and fails while it is not."""
        assert wire.health is not None
        endpoint = served[1]
        await wire.probe(endpoint)
        wire.health.draining = True
        with pytest.raises(ConnectionError):
            await wire.probe(endpoint)
        wire.health.draining = False
        dead = wire.dead_endpoint()
        with pytest.raises(ConnectionError):
            await wire.probe(dead, timeout=1.0)
