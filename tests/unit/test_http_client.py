"""Lumi's HTTP client (``transports/_http_client.py`` behind ``HttpChannel``) over real sockets:
keep-alive reuse, servers closing connections, responses in pieces, no pipelining, large
bodies, failures before and after sending, timeouts, cancellation and TLS."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

import lumi
from lumi.model.context import Metadata
from lumi.model.errors import NotSent
from lumi.pipeline import Call, compose
from lumi.pipeline.client import Client
from lumi.testing import wait_until
from lumi.transports._http_client import ConnectionPool, ResponseTimeout
from lumi.transports.base import ChannelSettings, ServerSettings
from lumi.transports.http import HttpChannel, HttpServer
from tests.tcpstate import established

StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Echo(lumi.Service):
    @lumi.api
    async def echo(self, text: str) -> str:
        return text

    @lumi.api
    async def reverse(self, data: bytes) -> bytes:
        return data[::-1]

    @lumi.api
    async def slow(self, seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds


@contextlib.asynccontextmanager
async def lumi_server(
    *, max_body: int = 1024 * 1024, keep_alive_timeout: float = 30.0
) -> AsyncIterator[HttpServer]:
    async with lumi.App([Echo]) as app:
        settings = ServerSettings(max_body=max_body, grace_period=2)
        server = HttpServer(
            app.host.dispatcher.handle, settings, keep_alive_timeout=keep_alive_timeout
        )
        await server.start()
        try:
            yield server
        finally:
            await server.aclose()


@contextlib.asynccontextmanager
async def raw_server(handler: StreamHandler, **kwargs: object) -> AsyncIterator[str]:
    """A plain asyncio server speaking whatever ``handler`` writes; yields its endpoint."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0, **kwargs)  # type: ignore[arg-type]
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request (head and content-length body), or b"" at the end of the stream."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return b""
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(
            b"content-length:")),
        0,
    )  # fmt: skip
    return head + await reader.readexactly(length)


def ok(body: bytes, *extra: bytes) -> bytes:
    headers = b"".join(h + b"\r\n" for h in extra)
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), headers, body)


def port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def call(text: str = "hi", deadline: float | None = None) -> Call:
    meta = Metadata(correlation_id="c-1", deadline=deadline)
    return Call("Echo", "echo", b'{"text": "%s"}' % text.encode(), meta)


async def test_sequential_calls_reuse_one_connection() -> None:
    """Fifty calls one after another travel over one keep-alive connection."""
    async with lumi_server() as server:
        channel = HttpChannel(server.endpoint)
        try:
            for n in range(50):
                assert await channel.call(call(str(n))) == b'"%d"' % n
            assert channel.pool.connections == 1
            assert established(port_of(server.endpoint)) == 1
        finally:
            await channel.aclose()


async def test_a_server_closing_idle_connections_is_noticed() -> None:
    """When the server closes an idle connection, the pool drops it at once and the next
    call opens a new one."""
    async with lumi_server(keep_alive_timeout=0.1) as server:
        channel = HttpChannel(server.endpoint)
        try:
            assert await channel.call(call("a")) == b'"a"'
            await wait_until(lambda: channel.pool.connections == 0, message="the close seen")
            assert await channel.call(call("b")) == b'"b"'
            assert channel.pool.connections == 1
        finally:
            await channel.aclose()


async def test_a_connection_closed_after_each_response_is_not_reused() -> None:
    """A server that closes after every answer (with or without ``connection: close``) still
    answers every call, one connection each."""
    accepted = 0

    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        await read_request(reader)
        extra = (b"connection: close",) if accepted % 2 else ()
        writer.write(ok(b'"x"', *extra))
        await writer.drain()
        writer.close()

    async with raw_server(once) as endpoint:
        channel = HttpChannel(endpoint)
        try:
            for _ in range(4):
                assert await channel.call(call()) == b'"x"'
                await wait_until(lambda: channel.pool.connections == 0, message="closed")
        finally:
            await channel.aclose()
    assert accepted == 4


async def test_a_response_split_across_many_reads() -> None:
    """A response written a few bytes at a time is put back together."""

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader):
            response = ok(b'"' + b"y" * 300 + b'"', b"x-correlation-id: c-1")
            for start in range(0, len(response), 7):
                writer.write(response[start : start + 7])
                await writer.drain()
                await asyncio.sleep(0)
        writer.close()

    async with raw_server(trickle) as endpoint:
        channel = HttpChannel(endpoint)
        try:
            for _ in range(3):
                assert await channel.call(call()) == b'"' + b"y" * 300 + b'"'
        finally:
            await channel.aclose()


async def test_chunked_close_delimited_and_interim_responses() -> None:
    """Chunked bodies, bodies that end with the connection, and a 100 Continue before the
    answer are all read correctly."""
    responses = [
        b'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n"a"',
        b'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n"b\r\n1\r\n"\r\n0\r\n\r\n',
        b'HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n"c"',
    ]

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while responses and await read_request(reader):
            response = responses.pop(0)
            writer.write(response)
            await writer.drain()
            if response.startswith(b"HTTP/1.0"):
                break
        writer.close()

    async with raw_server(answer) as endpoint:
        channel = HttpChannel(endpoint)
        try:
            assert [await channel.call(call()) for _ in range(3)] == [b'"a"', b'"b"', b'"c"']
        finally:
            await channel.aclose()


async def test_no_request_is_pipelined_behind_an_unanswered_one() -> None:
    """With more calls than connections, a connection carries its next request only after
    the previous response: the server never sees two requests queued on one connection."""
    overlaps = 0
    served = 0

    async def careful(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal overlaps, served
        while await read_request(reader):
            await asyncio.sleep(0.01)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader.read(1), 0.005)
                overlaps += 1  # a byte of another request arrived before we answered
            served += 1
            writer.write(ok(b'"p"'))
            await writer.drain()
        writer.close()

    async with raw_server(careful) as endpoint:
        channel = HttpChannel(endpoint, ChannelSettings(pool_size=2))
        try:
            results = await asyncio.gather(*(channel.call(call()) for _ in range(12)))
            assert results == [b'"p"'] * 12
            assert channel.pool.connections <= 2
        finally:
            await channel.aclose()
    assert served == 12 and overlaps == 0


async def test_large_bodies_both_ways_and_a_response_over_the_limit() -> None:
    """Megabytes go out and come back; a response over ``max_response`` is
    RESOURCE_EXHAUSTED, its connection is dropped, and the channel keeps working."""
    async with lumi_server(max_body=8 * 1024 * 1024) as server:
        channel = HttpChannel(server.endpoint)
        client = Client.for_service(Echo, channel.call)
        small = HttpChannel(server.endpoint, max_response=64 * 1024)
        try:
            data = bytes(range(256)) * (12 * 1024)  # 3 MiB, 4 MiB as base64 JSON
            assert await client.reverse(data=data) == data[::-1]
            with pytest.raises(lumi.ResourceExhausted, match="larger than the limit"):
                await Client.for_service(Echo, small.call).reverse(data=b"z" * 100_000)
            assert small.pool.connections == 0 or small.pool.idle == 0
            assert await Client.for_service(Echo, small.call).echo(text="still") == "still"
        finally:
            await channel.aclose()
            await small.aclose()


async def test_nothing_listening_is_not_sent() -> None:
    """A refused connection is NotSent: nothing left, so another replica may take the call."""
    async with raw_server(lambda r, w: asyncio.sleep(0)) as endpoint:
        pass  # the port is free again
    channel = HttpChannel(endpoint)
    try:
        with pytest.raises(NotSent, match="cannot connect"):
            await channel.call(call())
    finally:
        await channel.aclose()


@contextlib.contextmanager
def unanswered_listener() -> Iterator[tuple[str, int]]:
    """A port whose accept queue is full, so a new connection's SYN goes unanswered and
    connecting hangs (Linux drops it rather than refusing it)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    fillers: list[socket.socket] = []
    try:
        for _ in range(4):  # more than the queue holds (backlog 0 keeps one)
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(address)
            fillers.append(filler)
        yield address
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def test_a_connect_cut_short_by_the_deadline_is_a_timeout_not_a_failure() -> None:
    """When the caller's time ends while connecting, the pool says the time ran out
    (ResponseTimeout, so DEADLINE_EXCEEDED), never "connect failed" (NotSent, UNAVAILABLE): the
    verdict must not hang on comparing two clocks a tick apart."""
    with unanswered_listener() as (host, port):
        pool = ConnectionPool(host, port, size=4, connect_timeout=5.0)
        try:
            with pytest.raises(ResponseTimeout, match="no connection before the timeout"):
                await pool.request(b"POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n", b"", 0.2)
            channel = HttpChannel(f"http://{host}:{port}")
            try:
                with pytest.raises(lumi.DeadlineExceeded):
                    await channel.call(call(deadline=time.time() + 0.2))
            finally:
                await channel.aclose()
        finally:
            await pool.aclose()


@pytest.mark.parametrize(
    "answer",
    [b"", b'HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n"par', b"SPDY/9 what\r\n\r\n"],
    ids=["closed-without-answer", "closed-mid-body", "not-http"],
)
async def test_a_failure_after_sending_is_unavailable_not_not_sent(answer: bytes) -> None:
    """Once the request is written, a closed connection or an unreadable answer is
    UNAVAILABLE but not NotSent (the callee may have run it), and the connection is gone."""

    async def break_off(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()
        writer.close()

    async with raw_server(break_off) as endpoint:
        channel = HttpChannel(endpoint)
        try:
            with pytest.raises(lumi.Unavailable) as info:
                await channel.call(call())
            assert not isinstance(info.value, NotSent)
            await wait_until(lambda: channel.pool.connections == 0, message="dropped")
        finally:
            await channel.aclose()


async def test_data_nobody_asked_for_drops_the_connection() -> None:
    """A server writing on an idle connection loses it; the next call uses a new one."""

    async def chatty(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader):
            writer.write(ok(b'"q"') + b"HTTP/1.1 200 OK\r\n")  # and the start of another
            await writer.drain()
        writer.close()

    async with raw_server(chatty) as endpoint:
        channel = HttpChannel(endpoint)
        try:
            assert await channel.call(call()) == b'"q"'
            await wait_until(lambda: channel.pool.connections == 0, message="dropped")
            assert await channel.call(call()) == b'"q"'
        finally:
            await channel.aclose()


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[str]:
    """Reads requests and never answers."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader):
            pass
        writer.close()

    async with raw_server(silent) as endpoint:
        yield endpoint


async def test_a_deadline_ends_the_wait_and_drops_the_connection() -> None:
    """A callee silent past the deadline gives DEADLINE_EXCEEDED promptly; the connection
    (its answer may still come) is not reused."""
    loop = asyncio.get_running_loop()
    async with silent_server() as endpoint:
        channel = HttpChannel(endpoint)
        try:
            started = loop.time()
            with pytest.raises(lumi.DeadlineExceeded, match="before the deadline"):
                await channel.call(call(deadline=time.time() + 0.2))
            assert loop.time() - started < 2.0
            await wait_until(lambda: channel.pool.connections == 0, message="dropped")
        finally:
            await channel.aclose()


async def test_a_short_deadline_behind_long_ones_ends_on_time() -> None:
    """The pool's one watchdog is armed for the earliest expiry: calls with 30 s deadlines in
    flight first do not delay a later call's 0.2 s deadline, nor do they end with it."""
    loop = asyncio.get_running_loop()
    async with silent_server() as endpoint:
        channel = HttpChannel(endpoint)
        try:
            long = [
                asyncio.create_task(channel.call(call(deadline=time.time() + 30))) for _ in range(3)
            ]
            await wait_until(lambda: channel.pool.connections == 3, message="long calls sent")
            started = loop.time()
            with pytest.raises(lumi.DeadlineExceeded, match="before the deadline"):
                await channel.call(call(deadline=time.time() + 0.2))
            assert 0.15 < loop.time() - started < 2.0
            assert not any(task.done() for task in long)
            for task in long:
                task.cancel()
            await asyncio.gather(*long, return_exceptions=True)
        finally:
            await channel.aclose()


async def test_a_call_without_deadline_still_gives_up_after_the_request_timeout() -> None:
    """No deadline: the pool's watchdog ends a call older than ``request_timeout``."""
    async with silent_server() as endpoint:
        channel = HttpChannel(endpoint, request_timeout=0.3)
        try:
            with pytest.raises(lumi.DeadlineExceeded, match="in 0.3s"):
                await asyncio.wait_for(channel.call(call()), 5)
        finally:
            await channel.aclose()


async def test_a_cancelled_call_drops_its_connection() -> None:
    """Cancelling a call in flight closes its connection; the channel keeps working."""
    async with lumi_server() as server:
        channel = HttpChannel(server.endpoint)
        client = Client.for_service(Echo, channel.call)
        try:
            task = asyncio.ensure_future(client.slow(seconds=5))
            await wait_until(lambda: channel.pool.connections == 1, message="in flight")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await wait_until(lambda: channel.pool.connections == 0, message="dropped")
            assert await client.echo(text="after") == "after"
        finally:
            await channel.aclose()


async def test_waiting_for_a_free_connection_respects_the_deadline() -> None:
    """With every connection busy, a call with a deadline gives up at the deadline; the busy
    call finishes and the next call gets the freed connection."""
    async with lumi_server() as server:
        channel = HttpChannel(server.endpoint, ChannelSettings(pool_size=1))
        client = Client.for_service(Echo, channel.call)
        try:
            busy = asyncio.ensure_future(client.slow(seconds=0.5))
            await wait_until(lambda: channel.pool.connections == 1, message="busy")
            with pytest.raises(lumi.DeadlineExceeded):
                await client.invoke("echo", {"text": "late"}, timeout=0.1)
            assert await busy == 0.5
            assert await client.echo(text="next") == "next"
            assert channel.pool.connections == 1
        finally:
            await channel.aclose()


async def test_metadata_that_would_break_a_header_is_refused_before_sending() -> None:
    """A line break in metadata is INVALID_ARGUMENT naming the field (the edge's rule, checked
    before sending); nothing is sent."""
    async with lumi_server() as server:
        channel = HttpChannel(server.endpoint)
        try:
            bad = Call("Echo", "echo", b"{}", Metadata(correlation_id="a\r\nx-lumi-caller: me"))
            rule = "x-correlation-id must be 1-128 visible ASCII"
            with pytest.raises(lumi.InvalidArgument, match=rule):
                await channel.call(bad)
            accented = Call("Echo", "echo", b"{}", Metadata(idempotency_key="søren ✓"))
            with pytest.raises(
                lumi.InvalidArgument, match="idempotency-key must be 1-255 visible ASCII"
            ):
                await channel.call(accented)
            assert channel.pool.connections == 0
        finally:
            await channel.aclose()


def _tls_contexts(tmp: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1: (server context, client context)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lumi-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client


async def test_tls_connections_with_an_ssl_context(tmp_path: Path) -> None:
    """Given an SSL context, the channel speaks HTTPS and verifies the server certificate;
    without the right CA the handshake fails before anything is sent, as UNAUTHENTICATED
    saying the certificate is not accepted."""
    server_ctx, client_ctx = _tls_contexts(tmp_path)
    hellos = 0

    async def tls_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal hellos
        while request := await read_request(reader):
            hellos += request.endswith(b'{"text": "hi"}')
            writer.write(ok(b'"secure"'))
            await writer.drain()
        writer.close()

    async with raw_server(tls_echo, ssl=server_ctx) as endpoint:
        channel = HttpChannel(endpoint, ChannelSettings(ssl=client_ctx))
        untrusting = HttpChannel(endpoint, ChannelSettings(ssl=ssl.create_default_context()))
        try:
            assert [await channel.call(call()) for _ in range(3)] == [b'"secure"'] * 3
            assert channel.pool.connections == 1
            with pytest.raises(lumi.Unauthenticated, match="certificate is not accepted"):
                await untrusting.call(call())
        finally:
            await channel.aclose()
            await untrusting.aclose()
    assert hellos == 3


class Gate(lumi.Service):
    """Holds every call until the test opens the gate, counting the calls in flight."""

    async def startup(self) -> None:
        self.in_flight = 0
        self.peak = 0
        self.gate = asyncio.Event()

    @lumi.api(idempotent=True)
    async def hold(self, n: int) -> int:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await self.gate.wait()
        finally:
            self.in_flight -= 1
        return n


@pytest.mark.parametrize("pool_size", [None, 40], ids=["default-pool", "pool-of-40"])
async def test_500_concurrent_calls_through_one_channel(pool_size: int | None) -> None:
    """500 calls at once through one channel and the whole client pipeline all get their own
    answer; exactly ``pool_size`` of them are in flight together (no lock, no small pool
    serializes them) and the server never has more connections than that."""
    from lumi.runtime_services.resilience.balancer import Balancer
    from lumi.runtimes import stack

    settings = ChannelSettings() if pool_size is None else ChannelSettings(pool_size=pool_size)
    limit = settings.pool_size
    async with lumi.App([Gate]) as app:
        server = HttpServer(app.host.dispatcher.handle, ServerSettings(grace_period=2))
        await server.start()
        runtime = stack.RuntimeServices()
        channel = HttpChannel(server.endpoint, settings)
        balancer = Balancer("Gate", [channel], breakers=runtime.breakers("Caller"))
        handler = compose(balancer, stack.client_middlewares("Caller", runtime))
        client = Client.for_service(Gate, handler)
        gate = app.service(Gate)
        try:
            calls = asyncio.gather(*(client.hold(n=n) for n in range(500)))
            await wait_until(lambda: gate.in_flight == limit, timeout=30, message="pool full")
            port = port_of(server.endpoint)
            assert established(port) == limit == channel.pool.connections
            gate.gate.set()
            assert await asyncio.wait_for(calls, 60) == list(range(500))
            assert gate.peak == limit
            assert established(port) <= limit
        finally:
            gate.gate.set()
            await channel.aclose()
            await server.aclose()


def test_a_foreign_server_and_one_event_loop_per_channel() -> None:
    """Against Python's own http.server (keep-alive HTTP/1.1, a server Lumi did not write)
    calls share one connection; a channel used on a second event loop says it belongs to the
    first, and a new channel there works."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            answer = b'{"got": %d}' % len(body)
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"

    async def twice(channel: HttpChannel, close: bool) -> list[bytes]:
        try:
            results = [await channel.call(call("abc")) for _ in range(2)]
            assert channel.pool.connections == 1
            return results
        finally:
            if close:
                await channel.aclose()

    try:
        first = HttpChannel(endpoint)
        assert asyncio.run(twice(first, close=True)) == [b'{"got": 15}'] * 2
        with pytest.raises(RuntimeError, match="used on another event loop"):
            asyncio.run(twice(first, close=False))
        assert asyncio.run(twice(HttpChannel(endpoint), close=True)) == [b'{"got": 15}'] * 2
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def test_calls_waiting_for_a_connection_get_the_slots_of_closed_ones() -> None:
    """With two connections, each closed by the server after one answer, twelve calls (with
    deadlines) all succeed: a closed connection's slot goes to the next call waiting."""
    accepted = 0

    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        await read_request(reader)
        await asyncio.sleep(0.01)
        writer.write(ok(b'"w"', b"connection: close"))
        await writer.drain()
        writer.close()

    async with raw_server(once) as endpoint:
        channel = HttpChannel(endpoint, ChannelSettings(pool_size=2))
        try:
            deadline = time.time() + 30
            results = await asyncio.gather(
                *(channel.call(call(deadline=deadline)) for _ in range(12))
            )
            assert results == [b'"w"'] * 12
        finally:
            await channel.aclose()
    assert accepted == 12


async def test_closing_a_channel_fails_the_calls_waiting_for_a_connection() -> None:
    """Calls queued for a connection when the channel closes fail as NotSent (they never
    left); the call in flight fails as Lost (UNAVAILABLE: it may have run)."""
    async with silent_server() as endpoint:
        channel = HttpChannel(endpoint, ChannelSettings(pool_size=1))
        calls = [asyncio.ensure_future(channel.call(call())) for _ in range(3)]
        await wait_until(lambda: channel.pool.connections == 1, message="one in flight")
        await asyncio.sleep(0.05)
        await channel.aclose()
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
    kinds = sorted(type(o).__name__ for o in outcomes)
    assert kinds == ["Lost", "NotSent", "NotSent"], outcomes


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\ncontent-length: 999999999\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * 70_000 + b"\r\ncontent-length: 2\r\n\r\n",
    ],
    ids=["declared-body-too-large", "headers-too-large"],
)
async def test_responses_too_large_are_refused_before_reading_them(head: bytes) -> None:
    """A declared body over the limit or over-long headers are RESOURCE_EXHAUSTED at once."""

    async def huge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(head)
        await writer.drain()
        await reader.read()  # wait for the client to give up
        writer.close()

    async with raw_server(huge) as endpoint:
        channel = HttpChannel(endpoint)
        try:
            with pytest.raises(lumi.ResourceExhausted, match="larger than"):
                await asyncio.wait_for(channel.call(call()), 10)
        finally:
            await channel.aclose()


async def test_a_server_switching_protocols_is_unavailable() -> None:
    """A 101 Switching Protocols answer is not something a channel can read: UNAVAILABLE."""

    async def upgrade(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\nconnection: upgrade\r\n\r\n"
        )
        await writer.drain()
        await reader.read()
        writer.close()

    async with raw_server(upgrade) as endpoint:
        channel = HttpChannel(endpoint)
        try:
            with pytest.raises(lumi.Unavailable, match="switched protocols"):
                await channel.call(call())
        finally:
            await channel.aclose()
