"""The transport contract, written once: every transport's test module subclasses
:class:`TransportContract` and provides the ``wire`` fixture (a :class:`Wire`).

A wire serves a handler (the real dispatcher with the runtime's server middleware) and makes a
channel to what it serves; the contract checks that a call means the same on every wire: every
JSON-like type round-trips or is refused with INVALID_ARGUMENT (never changed), every error code
comes back as itself with message and details, metadata and deadlines travel, correlation holds
across a 3-hop chain that mixes this wire with HTTP, size limits answer cleanly, 200 calls run
at once, and a restart mid-call is retried only for idempotent methods.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import datetime
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

import pydantic
import pytest

import lumi
from lumi.brokers.memory import MemoryBroker
from lumi.model.context import Metadata
from lumi.model.errors import LumiError, StatusCode
from lumi.model.interface import ServiceInterface
from lumi.model.service import Service
from lumi.pipeline import Call, Handler, compose
from lumi.pipeline.client import Client
from lumi.runtimes import stack
from lumi.runtimes.host import Host
from lumi.transports.base import Channel
from tests.conformance.rpc_services import Color, Echo, Hop1, Hop2, Hop3, Inner, Payload, Priority

MAX_BODY = 64 * 1024
INT64 = (-(2**63), 2**63 - 1)
MINUS_FIVE = datetime.timezone(datetime.timedelta(hours=-5))


class Wire(abc.ABC):
    """One transport as the contract sees it."""

    name: ClassVar[str]
    bounded_ints: ClassVar[bool] = False  # True: ints travel as int64, and beyond is refused
    size_limited: ClassVar[bool] = True  # False only in-process, where no bytes travel

    @abc.abstractmethod
    async def serve(
        self, handler: Handler, interfaces: dict[str, ServiceInterface], port: int = 0
    ) -> tuple[str, Callable[[float], Any]]:
        """Start serving; (address, ``await close(grace_seconds)``). Limit: MAX_BODY bytes."""

    @abc.abstractmethod
    def channel(self, address: str, iface: ServiceInterface) -> Channel:
        """A channel to ``address`` for calls to ``iface``."""


@dataclasses.dataclass
class Served:
    host: Host
    address: str
    close: Callable[[float], Any]
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
    ) -> Served:
        """Host ``service`` on ``wire``; its capabilities call ``downstream[name]``."""
        if not self.broker.started:
            await self.broker.start()
        name = lumi.interface(service).name
        channels: list[Channel] = []

        def channel_for(callee: str) -> Handler:
            callee_wire, address = (downstream or {})[callee]
            iface = next(lumi.interface(c) for c in (Echo, Hop1, Hop2, Hop3) if c.name == callee)
            channel = callee_wire.channel(address, iface)
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
        address, close = await wire.serve(
            host.dispatcher.handle, {name: lumi.interface(service)}, port
        )
        served = Served(host, address, close, channels)
        self.served.append(served)
        return served

    def client(self, wire: Wire, address: str, service: type[Service]) -> Any:
        channel = wire.channel(address, lumi.interface(service))
        self.channels.append(channel)
        invoke = compose(channel.call, stack.client_middlewares(None, self.runtime))
        return Client.for_service(service, invoke)

    def raw(self, wire: Wire, address: str, service: type[Service]) -> Channel:
        channel = wire.channel(address, lumi.interface(service))
        self.channels.append(channel)
        return channel

    async def stop(self, served: Served, grace: float = 1.0) -> None:
        await served.close(grace)
        await served.host.stop()
        for channel in served.channels:
            await channel.aclose()
        self.served.remove(served)

    async def aclose(self) -> None:
        for channel in self.channels:
            await channel.aclose()
        for served in list(self.served):
            await self.stop(served, 0.5)
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


class TransportContract:
    """Semantics every Lumi transport keeps."""

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
        """Correlation id, traceparent, idempotency key, caller and deadline arrive."""
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
        assert got["caller"] == "Tester"
        assert 15 < got["remaining"] <= 20

    async def test_correlation_across_three_hops(self, wire: Wire, harness: Harness) -> None:
        """One correlation id and trace follow a call through Hop1 → Hop2 → Hop3, where the
        middle hop is HTTP and the others this wire; each hop knows its caller."""
        from tests.conformance.test_http import HttpWire

        http = HttpWire()
        hop3 = await harness.serve(wire, Hop3)
        hop2 = await harness.serve(http, Hop2, {"Hop3": (wire, hop3.address)})
        hop1 = await harness.serve(wire, Hop1, {"Hop2": (http, hop2.address)})
        client = harness.client(wire, hop1.address, Hop1)
        seen = await client.where()
        assert [s.service for s in seen] == ["Hop1", "Hop2", "Hop3"]
        assert len({s.correlation_id for s in seen}) == 1 and seen[0].correlation_id
        assert len({s.trace_id for s in seen}) == 1 and seen[0].trace_id
        assert [s.caller for s in seen] == [None, "Hop1", "Hop2"]

    async def test_deadline_is_honoured(self, wire: Wire, harness: Harness) -> None:
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
        data = "x" * (MAX_BODY - 1024)
        assert await echo.size(data=data) == len(data)

    async def test_payload_over_the_limit_fails_cleanly(self, wire: Wire, harness: Harness) -> None:
        """A request over the size limit fails with RESOURCE_EXHAUSTED and the server keeps
        serving (in-process, where nothing travels, there is no limit to hit)."""
        served = await harness.serve(wire, Echo)
        client = harness.client(wire, served.address, Echo)
        data = "x" * (MAX_BODY * 2)
        if wire.size_limited:
            with pytest.raises(lumi.ResourceExhausted):
                await client.size(data=data)
        else:
            assert await client.size(data=data) == len(data)
        assert await client.size(data="ok") == 2

    async def test_200_concurrent_calls(self, echo: Any) -> None:
        """200 calls in flight at once each get their own answer."""
        results = await asyncio.gather(*(echo.number(n=i) for i in range(200)))
        assert results == list(range(200))

    # -- restarts ----------------------------------------------------------------------------

    async def test_restart_retries_only_idempotent_calls(
        self, wire: Wire, harness: Harness
    ) -> None:
        """Calls in flight when the server dies: idempotent ones are retried against the
        restarted server and succeed; non-idempotent ones fail and ran exactly once."""
        served = await harness.serve(wire, Echo)
        port = int(served.address.rsplit(":", 1)[1]) if ":" in served.address else 0
        client = harness.client(wire, served.address, Echo)
        idempotent = [
            asyncio.create_task(client.slow_idempotent(seconds=0.5, tag=f"i{n}")) for n in range(3)
        ]
        once = [asyncio.create_task(client.slow(seconds=0.5, tag=f"o{n}")) for n in range(3)]
        echo = served.host.instances["Echo"]
        await lumi.testing.wait_until(lambda: len(echo.runs) == 6, message="6 calls running")
        await harness.stop(served, grace=0)
        restarted = await harness.serve(wire, Echo, port=port)
        assert restarted.address == served.address
        results = await asyncio.gather(*idempotent, *once, return_exceptions=True)
        assert results[:3] == [f"i{n}" for n in range(3)]
        assert all(isinstance(r, LumiError) for r in results[3:]), results[3:]
        again = restarted.host.instances["Echo"]
        assert not any(tag.startswith("o") for tag in again.runs)
        assert sorted(again.runs) == [f"i{n}" for n in range(3)]
