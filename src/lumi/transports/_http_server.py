"""A lean HTTP/1.1 server for Lumi's wire contract, on asyncio and the httptools parser.

Why not uvicorn + ASGI: measured on the echo benchmark (bench/http_bench.py), the ASGI
machinery (a task, a cycle object, a scope dict and message dicts per request, two writes per
response) costs more than Lumi's whole dispatcher, capping Lumi at ~0.6x a bare ASGI app. Lumi
needs only a small part of HTTP: POST with JSON bodies, a few GETs, keep-alive, pipelining in
order, body limits and graceful draining. That part is here, written once, with the parsing —
the hard part — left to httptools (llhttp, the parser of Node.js).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import httptools

from lumi.transports.tls import transport_identity
from lumi.transports.tls_server import TlsConnection

log = logging.getLogger("lumi.http")

Request = tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes | None]
"""(method, path, headers with lower-case names, body or None when it was too large).

Over TLS with a verified client certificate, the first header is ``(PEER, identity)``: no
header sent by a client can have that name (``:`` ends a header name on the wire)."""
PEER = b":peer"
Response = tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]
"""(status, content type, body, extra headers)."""
Respond = Callable[[Request], Awaitable[Response]]

_MAX_HEADER_BYTES = 64 * 1024
_MAX_PIPELINED = 32
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}


def _head(status: int, content_type: bytes, length: int, keep_alive: bool) -> bytes:
    reason = _REASONS.get(status, b"Unknown")
    connection = b"" if keep_alive else b"connection: close\r\n"
    return b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n%s" % (
        status, reason, content_type, length, connection,
    )  # fmt: skip


class ServerState:
    """Shared by all connections of one server: limits, the handler, and who is connected."""

    def __init__(self, respond: Respond, max_body: int, keep_alive_timeout: float) -> None:
        self.respond = respond
        self.max_body = max_body
        self.discard_limit = max(64 * 1024 * 1024, 16 * max_body)
        self.keep_alive_timeout = keep_alive_timeout
        self.connections: set[Connection] = set()
        self.draining = False


class Connection(asyncio.Protocol):
    """One client connection: parses requests, answers them one after another, in order."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.pending: collections.deque[tuple[Request, bool]] = collections.deque()
        self.worker: asyncio.Task[None] | None = None
        self.last_active = time.monotonic()
        self.peer: list[tuple[bytes, bytes]] = []
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.header_bytes = 0
        self.body: list[bytes] = []
        self.body_size = 0
        self.too_large = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.state.connections.add(self)
        identity = transport_identity(transport)  # TLS: the handshake is over by now
        if identity is not None:
            self.peer = [(PEER, identity.encode())]

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        self.transport = None
        if self.worker is not None and not self.worker.done():
            self.worker.cancel()

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, b"protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            # httptools wraps exceptions raised by our callbacks; unwrap our own.
            cause = exc.__context__
            if isinstance(cause, _TooMuch):
                self._fail(cause.status, cause.message)
            else:
                self._fail(400, f"malformed HTTP request: {exc}".encode())

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._reset()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value)
        if self.header_bytes > _MAX_HEADER_BYTES:
            raise _TooMuch(431, b"request headers are too large")
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        for name, value in self.headers:
            if name == b"content-length" and value.isdigit() and int(value) > self.state.max_body:
                self.too_large = True
            elif (
                name == b"expect"
                and value.lower() == b"100-continue"
                and not self.too_large
                and self.transport is not None
            ):
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.too_large or self.body_size > self.state.max_body:
            self.too_large = True
            self.body.clear()
            if self.body_size > self.state.discard_limit:
                raise _TooMuch(413, b"request body is far larger than the limit")
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method()
        path = self.url.split(b"?", 1)[0]
        body = None if self.too_large else b"".join(self.body)
        headers = [*self.peer, *self.headers] if self.peer else self.headers
        request: Request = (method, path, headers, body)
        self.pending.append((request, self.parser.should_keep_alive()))
        if len(self.pending) > _MAX_PIPELINED and self.transport is not None:
            self.transport.pause_reading()
        if self.worker is None or self.worker.done():
            self.worker = asyncio.get_running_loop().create_task(self._work())

    # answering

    async def _work(self) -> None:
        while self.pending and self.transport is not None:
            request, keep_alive = self.pending.popleft()
            try:
                status, content_type, body, extra = await self.state.respond(request)
            except Exception:  # a bug below us must not take the connection down silently
                log.exception("unexpected error answering %s", request[1])
                status, content_type, body, extra = (
                    500, b"application/json",
                    b'{"code":"INTERNAL","message":"internal server error","details":null}', [],
                )  # fmt: skip
            transport = self._transport()
            if transport is None:
                return
            keep_alive = keep_alive and not self.state.draining
            head = _head(status, content_type, len(body), keep_alive)
            if extra:
                head += b"".join(b"%s: %s\r\n" % pair for pair in extra)
            transport.write(head + b"\r\n" + (b"" if request[0] == b"HEAD" else body))
            self.last_active = time.monotonic()
            if not keep_alive:
                transport.close()
                return
            if len(self.pending) <= _MAX_PIPELINED // 2:
                transport.resume_reading()

    def _transport(self) -> asyncio.Transport | None:
        return self.transport  # re-read: the connection may have been lost while awaiting

    def _fail(self, status: int, message: bytes) -> None:
        if self.transport is None:
            return
        body = b'{"code":"INVALID_ARGUMENT","message":"%s","details":null}' % message.replace(
            b'"', b"'"
        )
        self.transport.write(_head(status, b"application/json", len(body), False) + b"\r\n" + body)
        self.transport.close()

    @property
    def idle(self) -> bool:
        return not self.pending and (self.worker is None or self.worker.done())

    def close_if_idle(self, now: float) -> None:
        expired = self.state.draining or now - self.last_active > self.state.keep_alive_timeout
        if self.transport is not None and self.idle and expired:
            self.transport.close()


_PLAINTEXT = (
    b'{"code":"UNAUTHENTICATED","message":"this endpoint speaks TLS: call it with https:// '
    b'(with a client certificate of the app for any method that is not public)",'
    b'"details":null}'
)


def _plaintext_answer(data: bytes) -> bytes:
    """What a plain-HTTP request to a TLS port gets: 401, saying to use TLS."""
    return _head(401, b"application/json", len(_PLAINTEXT), False) + b"\r\n" + _PLAINTEXT


class _TooMuch(Exception):
    def __init__(self, status: int, message: bytes) -> None:
        self.status = status
        self.message = message


class HttpListener:
    """Accepts connections on a listening socket and drains them on close."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, sock: Any, ssl: Any = None) -> None:
        """Accept on ``sock``; with ``ssl`` (an ``ssl.SSLContext``), over TLS."""
        loop = asyncio.get_running_loop()
        if ssl is None:
            factory: Callable[[], asyncio.Protocol] = lambda: Connection(self.state)  # noqa: E731
        else:
            factory = lambda: TlsConnection(  # noqa: E731
                ssl, Connection(self.state), on_plaintext=_plaintext_answer
            )
        self._server = await loop.create_server(factory, sock=sock)
        self._sweeper = loop.create_task(self._sweep())

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for connection in list(self.state.connections):
                connection.close_if_idle(now)

    async def close(self, grace: float) -> None:
        """Stop accepting; let requests in flight finish for up to ``grace`` seconds."""
        self.state.draining = True
        if self._server is not None:
            self._server.close()
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            now = time.monotonic()
            for connection in list(self.state.connections):
                connection.close_if_idle(now)
            if not self.state.connections:
                break
            await asyncio.sleep(0.01)
        for connection in list(self.state.connections):
            if connection.transport is not None:
                connection.transport.abort()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._server is not None:
            await self._server.wait_closed()
