"""The transport contract, written once: every transport's test module subclasses it.

A subclass provides one fixture, ``wire``: a :class:`Wire` that serves a handler (the real
dispatcher of the :class:`Probe` service, with the runtime's server middleware) and makes
channels to it. A network :class:`~lumi.transports.base.Transport` subclasses
:class:`NetworkTransportContract` with a :class:`SocketWire` (bind, serve on the socket, a
channel per endpoint, readiness probes); the in-process local channel subclasses
:class:`TransportContract` with a wire of its own.
Every case calls through the real client (:class:`lumi.Client`), so what is checked is what a
service sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import enum
from collections.abc import AsyncIterator
from typing import Any

import pydantic
import pytest

import lumi
from lumi.brokers.memory import MemoryBroker
from lumi.model.context import Metadata
from lumi.model.errors import NotSent, StatusCode
from lumi.pipeline.call import Call, Handler
from lumi.pipeline.client import Client
from lumi.runtime_services.resilience.balancer import Balancer
from lumi.runtime_services.resilience.breaker import Breakers
from lumi.runtimes.host import Host
from lumi.transports.base import Channel, Health, ServerSettings, Transport

LIMIT = 64 * 1024  # the body limit servers under test get


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

    @contextlib.asynccontextmanager
    async def serve(self, handler: Handler) -> AsyncIterator[str]:
        """Serve ``handler``; yields the endpoint."""
        raise NotImplementedError
        yield ""

    def channel(self, endpoint: str) -> Channel:
        raise NotImplementedError


class SocketWire(Wire):
    """A network transport: bind a socket, serve on it, one channel per endpoint."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.name = transport.name
        self.health: Health | None = None

    @contextlib.asynccontextmanager
    async def serve(self, handler: Handler) -> AsyncIterator[str]:
        sock = self.transport.bind("127.0.0.1", 0)
        self.health = Health()
        settings = ServerSettings(
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
        return self.transport.channel(endpoint, lumi.interface(Probe))

    def dead_endpoint(self) -> str:
        """An endpoint where nothing listens."""
        sock = self.transport.bind("127.0.0.1", 0)
        endpoint = self.transport.endpoint_of(sock)
        sock.close()
        return endpoint


class TransportContract:
    """The cases every transport passes."""

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
            Metadata(caller="in valid"),
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
        await wire.transport.probe(endpoint)
        wire.health.draining = True
        with pytest.raises(ConnectionError):
            await wire.transport.probe(endpoint)
        wire.health.draining = False
        dead = wire.dead_endpoint()
        with pytest.raises(ConnectionError):
            await wire.transport.probe(dead, timeout=1.0)
