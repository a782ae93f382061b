"""The HTTP transport over real sockets: the wire contract, protocol edge cases, the client."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator

import pytest

import lumi
import lumi.testing
from lumi.model.context import Metadata
from lumi.model.errors import NotSent
from lumi.pipeline import Call
from lumi.pipeline.client import Client
from lumi.runtime_services.resilience.balancer import Balancer
from lumi.runtime_services.resilience.breaker import Breakers
from lumi.transports.base import ServerSettings
from lumi.transports.http import HttpChannel, HttpServer

SLOW_STARTED = asyncio.Event()  # set when a slow call is being handled


class Echo(lumi.Service):
    @lumi.api
    async def echo(self, text: str) -> str:
        return text

    @lumi.api
    async def slow(self, seconds: float) -> float:
        SLOW_STARTED.set()
        await asyncio.sleep(seconds)
        return seconds

    @lumi.api
    async def fail(self) -> None:
        raise lumi.PermissionDenied("not you", {"who": "me"})


@pytest.fixture
async def server() -> AsyncIterator[HttpServer]:
    async with lumi.App([Echo]) as app:
        settings = ServerSettings(
            interfaces={"Echo": lumi.interface(Echo)}, max_body=1024, grace_period=5
        )
        srv = HttpServer(app.host.dispatcher.handle, settings)
        await srv.start()
        try:
            yield srv
        finally:
            await srv.aclose()


async def exchange(srv: HttpServer, raw: bytes, *, responses: int = 1) -> list[bytes]:
    """Send raw bytes on one connection; read ``responses`` complete responses."""
    host, port = srv.endpoint.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(raw)
    await writer.drain()
    out = []
    for _ in range(responses):
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        length = int(
            next(
                h.split(b":")[1]
                for h in head.split(b"\r\n")
                if h.lower().startswith(b"content-length")
            )
        )
        body = await reader.readexactly(length) if b"HEAD" not in raw[:4] else b""
        out.append(head + body)
    writer.close()
    return out


def post(path: str, body: bytes, *extra: str) -> bytes:
    headers = "".join(f"{h}\r\n" for h in extra)
    return (
        f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n{headers}\r\n"
    ).encode() + body


async def test_pipelined_requests_are_answered_in_order(server: HttpServer) -> None:
    """Several requests sent at once on one connection get their answers in order."""
    raw = b"".join(post("/Echo/echo", json.dumps({"text": str(i)}).encode()) for i in range(5))
    answers = await exchange(server, raw, responses=5)
    assert [a.rsplit(b"\r\n\r\n", 1)[1] for a in answers] == [
        b'"0"',
        b'"1"',
        b'"2"',
        b'"3"',
        b'"4"',
    ]


async def test_http_1_0_closes_and_head_has_no_body(server: HttpServer) -> None:
    """HTTP/1.0 gets connection: close; HEAD gets headers only."""
    [answer] = await exchange(server, b"GET /healthz HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK") and b"connection: close" in answer
    [head] = await exchange(server, b"HEAD /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and head.endswith(b"\r\n\r\n")


async def test_expect_100_continue(server: HttpServer) -> None:
    """A client sending Expect: 100-continue is told to continue, then answered."""
    raw = post("/Echo/echo", b'{"text": "hi"}', "expect: 100-continue")
    host, port = server.endpoint.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head_end = raw.index(b"\r\n\r\n") + 4
    writer.write(raw[:head_end])
    assert (
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == b"HTTP/1.1 100 Continue\r\n\r\n"
    )
    writer.write(raw[head_end:])
    response = await asyncio.wait_for(reader.read(4096), 5)
    assert response.startswith(b"HTTP/1.1 200 OK") and response.endswith(b'"hi"')
    writer.close()


async def test_malformed_http_gets_400_and_the_server_keeps_serving(server: HttpServer) -> None:
    """Garbage is answered 400 and that connection closed; others are unaffected."""
    [answer] = await exchange(server, b"NOT HTTP AT ALL\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400") and b"malformed HTTP request" in answer
    [ok] = await exchange(server, post("/Echo/echo", b'{"text": "still here"}'))
    assert ok.endswith(b'"still here"')


async def test_oversized_headers_and_bodies(server: HttpServer) -> None:
    """Huge headers are 431; a body over the limit is 413, then that connection is closed (the
    body is never read), and the server keeps serving others."""
    [big_headers] = await exchange(
        server, b"GET /healthz HTTP/1.1\r\nx-big: " + b"a" * 70_000 + b"\r\n\r\n"
    )
    assert big_headers.startswith(b"HTTP/1.1 431")
    raw = post("/Echo/echo", b'{"text": "' + b"x" * 5000 + b'"}') + post(
        "/Echo/echo", b'{"text": "after"}'
    )
    [too_big] = await exchange(server, raw)
    assert too_big.startswith(b"HTTP/1.1 413") and b"RESOURCE_EXHAUSTED" in too_big
    assert b"connection: close" in too_big
    [after] = await exchange(server, post("/Echo/echo", b'{"text": "after"}'))
    assert after.startswith(b"HTTP/1.1 200") and after.endswith(b'"after"')
    chunked = (
        b"POST /Echo/echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n"
        b"content-type: application/json\r\n\r\n" + b"800\r\n" + b"x" * 0x800 + b"\r\n0\r\n\r\n"
    )
    [chunked_answer] = await exchange(server, chunked)
    assert chunked_answer.startswith(b"HTTP/1.1 413")


async def test_drain_finishes_in_flight_and_refuses_new(server: HttpServer) -> None:
    """aclose() lets a call in flight finish, then nothing is accepted."""
    channel = HttpChannel(server.endpoint)
    try:
        SLOW_STARTED.clear()
        call = asyncio.create_task(
            channel.call(Call("Echo", "slow", b'{"seconds": 0.5}', Metadata()))
        )
        # In flight means being handled, not merely connected: a request still on its way
        # when the drain begins finds the server closed, which is another case.
        await lumi.testing.wait_until(SLOW_STARTED.is_set, message="the call to be handled")
        await server.aclose()
        assert await call == b"0.5"
        late = HttpChannel(server.endpoint)
        with pytest.raises(NotSent, match=server.endpoint):
            await late.call(Call("Echo", "echo", b'{"text": "x"}', Metadata()))
        await late.aclose()
    finally:
        await channel.aclose()


async def test_client_maps_errors_and_fails_over(server: HttpServer) -> None:
    """Remote errors come back typed; a dead endpoint is skipped; nothing listening is UNAVAILABLE."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    breakers = Breakers()
    balancer = Balancer(
        "Echo", [HttpChannel(dead), HttpChannel(server.endpoint)], breakers=breakers
    )
    client = Client.for_service(Echo, balancer)
    try:
        assert [await client.echo(text=str(i)) for i in range(4)] == ["0", "1", "2", "3"]
        with pytest.raises(lumi.PermissionDenied) as info:
            await client.fail()
        assert info.value.details == {"who": "me"}
        with pytest.raises(lumi.DeadlineExceeded):
            await client.invoke("slow", {"seconds": 2}, timeout=0.1)
        assert breakers.get(dead, "Echo", "echo").failures >= 2  # refused connections counted
    finally:
        await balancer.aclose()
    lonely = Balancer("Echo", [HttpChannel(dead)], breakers=Breakers())
    with pytest.raises(lumi.Unavailable, match="cannot reach Echo"):
        await lonely(Call("Echo", "echo", b"{}", Metadata()))
    await lonely.aclose()


async def test_deadline_travels_and_is_enforced_by_the_callee(server: HttpServer) -> None:
    """The callee stops working at the caller's deadline (x-lumi-deadline)."""
    started = time.monotonic()
    raw = post(
        "/Echo/slow", b'{"seconds": 3}', f"x-lumi-deadline: {int((time.time() + 0.2) * 1000)}"
    )
    [answer] = await exchange(server, raw)
    assert answer.startswith(b"HTTP/1.1 504") and b"DEADLINE_EXCEEDED" in answer
    assert time.monotonic() - started < 2


async def test_interface_route_serves_the_hub(server: HttpServer) -> None:
    """GET /interface returns the interfaces; a client built from it works."""
    [answer] = await exchange(server, b"GET /interface HTTP/1.1\r\nhost: x\r\n\r\n")
    data = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    iface = lumi.ServiceInterface.from_dict(data["Echo"])
    assert iface == lumi.interface(Echo)
    channel = HttpChannel(server.endpoint)
    try:
        assert await Client(iface, channel.call).echo(text="json only") == "json only"
    finally:
        await channel.aclose()


async def test_the_routes_a_server_remembers_are_bounded_in_count_and_size(
    server: HttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Request paths come from callers: many distinct or long ones must not grow the cache."""
    from lumi.transports import http

    monkeypatch.setattr(http, "_MAX_TARGETS", 3)
    long_path = "/Echo/" + "e" * 300
    raw = post(long_path, b'{"text": "x"}')
    raw += b"".join(post(f"/Echo{i}/echo", b'{"text": "x"}') for i in range(6))
    raw += post("/Echo/echo", b'{"text": "y"}')
    answers = await exchange(server, raw, responses=8)
    assert all(b"404" in a.split(b"\r\n", 1)[0] for a in answers[:7])
    assert answers[7].startswith(b"HTTP/1.1 200") and answers[7].endswith(b'"y"')
    targets = server.router.targets
    assert len(targets) == 3 and all(len(path) <= 256 for path in targets)
    assert long_path.encode() not in targets
