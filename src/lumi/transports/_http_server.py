"""A lean HTTP/1.1 server for Lumi's wire contract, on asyncio and the httptools parser.

Why not uvicorn + ASGI: measured on the echo benchmark (bench/http_bench.py), the ASGI
machinery (a task, a cycle object, a scope dict and message dicts per request, two writes per
response) costs more than Lumi's whole dispatcher, capping Lumi at ~0.6x a bare ASGI app. Lumi
needs only a small part of HTTP: POST with JSON bodies, a few GETs, keep-alive, pipelining in
order, limits and graceful draining. That part is here, written once, with the parsing — the
hard part — left to httptools (llhttp, the parser of Node.js).

What one connection may cost is bounded, and every limit is enforced before the bytes are kept:

* the request line (URL) is at most :attr:`Limits.max_url` bytes (414) and the header lines at
  most :attr:`Limits.max_header_bytes` (431). httptools buffers a header until it is complete,
  so input is fed to it in slices and the bytes of an unfinished head are counted as they
  arrive: a 100 MB header is refused after ~64 KB, never buffered;
* a body is at most ``max_body`` bytes: a ``Content-Length`` over it is answered 413 as soon as
  the headers are in (instead of ``100 Continue`` when the client asked), a chunked body as
  soon as it passes the limit;
* a request's headers must arrive within ``header_timeout`` seconds of its first byte and its
  body within ``body_timeout`` after them, or it is answered 408 and closed (slowloris);
* at most :attr:`Limits.max_pipelined` requests or ``max_body`` bytes of bodies wait for their
  answers, and an answer is written only when the client reads the previous ones — beyond
  that, reading pauses and TCP pushes back on the client; a client that reads nothing for
  ``body_timeout`` seconds is disconnected;
* an answer the connection cannot go on from (413, 414, 431, 408, a malformed request) is sent
  *after* the answers of the requests before it, in order; then the connection is half-closed
  and what the client still sends is read and dropped for a moment (so the answer is not lost
  to a reset), then closed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import enum
import json
import logging
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import httptools

from lumi.transports.base import DEFAULT_BACKLOG
from lumi.transports.tls import transport_identity
from lumi.transports.tls_server import TlsConnection

log = logging.getLogger("lumi.http")

Request = tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]
"""(method, path, headers with lower-case names, body).

Over TLS with a verified client certificate, the first header is ``(PEER, identity)``: no
header sent by a client can have that name (``:`` ends a header name on the wire)."""
PEER = b":peer"
Response = tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]
"""(status, content type, body, extra headers)."""
Respond = Callable[[Request], Awaitable[Response]]

_SLICE = 16 * 1024  # bytes fed to the parser at a time, so an unfinished head is measured
_LINGER = 2.0  # seconds a refused connection drains what the client still sends
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one request, and one connection, may cost (see the module docstring)."""

    max_body: int = 4 * 1024 * 1024
    max_url: int = 8 * 1024
    max_header_bytes: int = 64 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive_timeout: float = 30.0
    max_pipelined: int = 32


def _head(status: int, content_type: bytes, length: int, keep_alive: bool) -> bytes:
    reason = _REASONS.get(status, b"Unknown")
    connection = b"" if keep_alive else b"connection: close\r\n"
    return b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n%s" % (
        status, reason, content_type, length, connection,
    )  # fmt: skip


def _refusal(status: int, code: bytes, message: bytes) -> bytes:
    error = {"code": code.decode(), "message": message.decode("latin-1"), "details": None}
    body = json.dumps(error).encode()
    return _head(status, b"application/json", len(body), False) + b"\r\n" + body


class ServerState:
    """Shared by all connections of one server: limits, the handler, and who is connected."""

    def __init__(self, respond: Respond, limits: Limits) -> None:
        self.respond = respond
        self.limits = limits
        # an unfinished head may hold this many bytes before it is refused (the slack: the
        # request line's and the slice's worth, as a head is measured a slice at a time)
        self.max_head = limits.max_url + limits.max_header_bytes + 2 * _SLICE
        self.max_waiting = max(limits.max_body, 1024 * 1024)
        self.connections: set[Connection] = set()
        self.draining = False


class Phase(enum.Enum):
    IDLE = 0  # between requests
    HEAD = 1  # request line and headers arriving
    BODY = 2  # body arriving


class _Refuse(Exception):
    """Raised in a parser callback: answer ``status`` and close."""

    def __init__(self, status: int, code: bytes, message: bytes) -> None:
        self.status = status
        self.code = code
        self.message = message


class Connection(asyncio.Protocol):
    """One client connection: parses requests, answers them one after another, in order."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.limits = state.limits
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        # requests (with keep-alive) waiting for an answer; None stands for the final refusal
        self.pending: collections.deque[tuple[Request, bool] | None] = collections.deque()
        self.waiting_bytes = 0
        self.worker: asyncio.Task[None] | None = None
        self.last_active = time.monotonic()
        self.phase = Phase.IDLE
        self.phase_started = self.last_active
        self.head_bytes = 0
        self.paused = False  # reading paused by us (too much waiting)
        self.stash = b""  # input received before the pause took effect
        self.refusal: bytes | None = None  # set once the connection cannot go on
        self.linger_until: float | None = None
        self.discarded = 0
        self._writable: asyncio.Future[None] | None = None  # set while the client is not reading
        self.write_paused_at = 0.0
        self.peer: list[tuple[bytes, bytes]] = []
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.header_bytes = 0
        self.body: list[bytes] = []
        self.body_size = 0
        self.expect = False  # expect: 100-continue

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
        self._wake_writer()

    def eof_received(self) -> bool | None:
        if self.refusal is not None:
            return False  # close: the refused client is done sending
        return None

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = asyncio.get_running_loop().create_future()
            self.write_paused_at = time.monotonic()

    def resume_writing(self) -> None:
        self._wake_writer()

    def _wake_writer(self) -> None:
        if self._writable is not None:
            if not self._writable.done():
                self._writable.set_result(None)
            self._writable = None

    def data_received(self, data: bytes) -> None:
        if self.refusal is not None:  # refused: read and drop
            self.discarded += len(data)
            if self.discarded > self.state.max_waiting and self.transport is not None:
                self.transport.abort()
            return
        self.last_active = time.monotonic()
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        size = len(data)
        start = 0
        while start < size:
            if self.paused:
                self.stash = data[start:]
                return
            piece = data if start == 0 and size <= _SLICE else data[start : start + _SLICE]
            start += len(piece)
            try:
                self.parser.feed_data(piece)
            except httptools.HttpParserUpgrade:
                self._refuse(400, b"INVALID_ARGUMENT", b"protocol upgrades are not supported")
                return
            except httptools.HttpParserError as exc:
                # httptools wraps exceptions raised by our callbacks; unwrap our own.
                cause = exc.__context__
                if isinstance(cause, _Refuse):
                    self._refuse(cause.status, cause.code, cause.message)
                else:
                    self._refuse(
                        400, b"INVALID_ARGUMENT", f"malformed HTTP request: {exc}".encode()
                    )
                return
            if self.phase is Phase.HEAD:
                self.head_bytes += len(piece)
                if self.head_bytes > self.state.max_head:
                    self._refuse(431, b"INVALID_ARGUMENT", b"request headers are too large")
                    return

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._reset()
        self.phase = Phase.HEAD
        # The time of the read that holds it (set just before feeding it): one clock reading
        # per read, not one per callback.
        self.phase_started = self.last_active
        self.head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.limits.max_url:
            raise _Refuse(
                414,
                b"INVALID_ARGUMENT",
                b"request URL is longer than %d bytes" % self.limits.max_url,
            )

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value) + 4  # ": " and CRLF
        if self.header_bytes > self.limits.max_header_bytes:
            raise _Refuse(431, b"INVALID_ARGUMENT", b"request headers are too large")
        name = name.lower()
        self.headers.append((name, value))
        # (checked as each header arrives rather than in a second pass over them all)
        if len(name) == 14 and name == b"content-length":
            if value.isdigit() and int(value) > self.limits.max_body:
                raise _Refuse(
                    413,
                    b"RESOURCE_EXHAUSTED",
                    b"request body is larger than the limit of %d bytes" % self.limits.max_body,
                )
        elif len(name) == 6 and name == b"expect" and value.lower() == b"100-continue":
            self.expect = True

    def on_headers_complete(self) -> None:
        self.phase = Phase.BODY
        self.phase_started = self.last_active
        if self.expect and self.idle and self.transport is not None:
            # (Behind unanswered pipelined requests the interim answer would come out of
            # order; the client then sends the body after its own short wait.)
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.body_size > self.limits.max_body:
            raise _Refuse(
                413,
                b"RESOURCE_EXHAUSTED",
                b"request body is larger than the limit of %d bytes" % self.limits.max_body,
            )
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.phase = Phase.IDLE
        method = self.parser.get_method()
        path = self.url.split(b"?", 1)[0]
        body = b"".join(self.body)
        self.body = []
        headers = [*self.peer, *self.headers] if self.peer else self.headers
        request: Request = (method, path, headers, body)
        self.pending.append((request, self.parser.should_keep_alive()))
        self.waiting_bytes += len(body)
        if (
            len(self.pending) > self.limits.max_pipelined
            or self.waiting_bytes > self.state.max_waiting
        ) and not self.paused:
            self.paused = True
            if self.transport is not None:
                self.transport.pause_reading()
        self._start_worker()

    # answering

    def _start_worker(self) -> None:
        if self.worker is None or self.worker.done():
            self.worker = asyncio.get_running_loop().create_task(self._work())

    def _refuse(self, status: int, code: bytes, message: bytes) -> None:
        """Answer ``status`` after the requests already parsed, then close."""
        if self.refusal is not None:
            return
        self.refusal = _refusal(status, code, message)
        self.stash = b""
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()  # to drop what the client still sends
        self.pending.append(None)
        self._start_worker()

    async def _work(self) -> None:
        while self.pending and self.transport is not None:
            item = self.pending.popleft()
            if item is None:
                await self._send_refusal()
                return
            request, keep_alive = item
            self.waiting_bytes -= len(request[3])
            try:
                status, content_type, body, extra = await self.state.respond(request)
            except Exception:  # a bug below us must not take the connection down silently
                log.exception("unexpected error answering %s", request[1][:200])
                status, content_type, body, extra = (
                    500, b"application/json",
                    b'{"code":"INTERNAL","message":"internal server error","details":null}', [],
                )  # fmt: skip
            if self._writable is not None:
                await self._writable  # the client is not reading: wait, do not buffer
            transport = self._live()
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
            self._maybe_resume()
            if self.pending:
                # Pipelined requests that never wait (a 404, a 400) would otherwise be answered
                # back to back, keeping every other connection waiting: take turns.
                await asyncio.sleep(0)

    def _live(self) -> asyncio.Transport | None:
        return self.transport  # re-read: the connection may have been lost while awaiting

    def _maybe_resume(self) -> None:
        if (
            self.paused
            and len(self.pending) <= self.limits.max_pipelined // 2
            and self.waiting_bytes <= self.state.max_waiting // 2
            and self.transport is not None
        ):
            self.paused = False
            self.phase_started = time.monotonic()  # our pause is not the client's slowness
            self.transport.resume_reading()
            stash, self.stash = self.stash, b""
            if stash:
                self._feed(stash)

    async def _send_refusal(self) -> None:
        if self._writable is not None:
            await self._writable
        transport = self.transport
        if transport is None or self.refusal is None:
            return
        transport.write(self.refusal)
        if transport.can_write_eof():
            transport.write_eof()
            self.linger_until = time.monotonic() + _LINGER
        else:
            transport.close()

    @property
    def idle(self) -> bool:
        return not self.pending and (self.worker is None or self.worker.done())

    def sweep(self, now: float) -> None:
        """Close the connection if it is idle too long, too slow, or done lingering."""
        transport = self.transport
        if transport is None:
            return
        if self.linger_until is not None:
            if now > self.linger_until:
                transport.close()
            return
        if self._writable is not None and now - self.write_paused_at > self.limits.body_timeout:
            transport.abort()  # it has not read its answers for that long
            return
        if self.refusal is not None or self.paused:
            return
        if self.phase is Phase.HEAD and now - self.phase_started > self.limits.header_timeout:
            self._refuse(
                408,
                b"DEADLINE_EXCEEDED",
                b"request headers did not arrive within %gs" % self.limits.header_timeout,
            )
        elif self.phase is Phase.BODY and now - self.phase_started > self.limits.body_timeout:
            self._refuse(
                408,
                b"DEADLINE_EXCEEDED",
                b"request body did not arrive within %gs" % self.limits.body_timeout,
            )
        elif self.phase is Phase.IDLE and self.idle:
            expired = self.state.draining or now - self.last_active > self.limits.keep_alive_timeout
            if expired:
                transport.close()


_PLAINTEXT = (
    b'{"code":"UNAUTHENTICATED","message":"this endpoint speaks TLS: call it with https:// '
    b'(with a client certificate of the app for any method that is not public)",'
    b'"details":null}'
)


def _plaintext_answer(data: bytes) -> bytes:
    """What a plain-HTTP request to a TLS port gets: 401, saying to use TLS."""
    return _head(401, b"application/json", len(_PLAINTEXT), False) + b"\r\n" + _PLAINTEXT


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
        # create_server listens again with its own backlog (100 unless told): keep the
        # documented one.
        self._server = await loop.create_server(factory, sock=sock, backlog=DEFAULT_BACKLOG)
        self._sweeper = loop.create_task(self._sweep())

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            for connection in list(self.state.connections):
                connection.sweep(now)

    async def close(self, grace: float) -> None:
        """Stop accepting; let requests in flight finish for up to ``grace`` seconds."""
        self.state.draining = True
        if self._server is not None:
            self._server.close()
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            now = time.monotonic()
            for connection in list(self.state.connections):
                connection.sweep(now)
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
