"""A lean HTTP/1.1 client for Lumi's channels, on asyncio and the httptools parser.

Why not aiohttp: on the two-hop benchmark (bench/hop_bench.py) an aiohttp request cost the
calling replica more CPU than serving the call did (request and response objects, header
multidicts, URL parsing, payload wrappers, timers and several writes per request). A channel
needs a small part of HTTP: one endpoint, keep-alive connections, a request written in one
piece and a response read into bytes. That part is here, with the parsing left to httptools
(llhttp, the parser of Node.js), as in the server (``_http_server.py``).

What it does and does not assume:

* one request at a time per connection (no pipelining); ``size`` connections at most, made on
  demand and reused most-recently-used first; a call finding them all busy waits its turn in a
  FIFO queue of futures (no lock), and a freed connection is handed straight to it;
* a connection the server closes while idle is dropped as soon as the loop sees it; one idle
  longer than ``idle_timeout`` (below the usual server keep-alive timeouts) is not reused;
* responses framed by ``content-length``, chunked, or by the end of the connection, bounded by
  ``max_response`` bytes and 64 KiB of headers;
* errors say what the caller may conclude: :class:`ConnectFailed` — no connection, nothing
  sent; :class:`ConnectionClosed` — the connection failed after the request was written (it
  may have been served); :class:`ResponseTimeout`; :class:`ResponseTooLarge`;
  :class:`ProtocolError` — not HTTP/1.1 we can read;
* TLS: pass an :class:`ssl.SSLContext` (and ``server_hostname``) and connections are made with
  it; nothing else changes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl as ssl_module
from typing import Any

import httptools

Response = tuple[int, bytes]
"""(status, body)."""

_MAX_HEADER_BYTES = 64 * 1024
_WRITE_SEPARATELY = 64 * 1024  # above this, write head and body without joining them


class ConnectFailed(ConnectionError):
    """No connection could be made (refused, unreachable, timed out): nothing was sent."""


class ConnectionClosed(ConnectionError):
    """The connection closed or failed after the request was written."""


class ProtocolError(ConnectionError):
    """The server's answer was not HTTP/1.1 this client can read."""


class ResponseTimeout(TimeoutError):
    """No complete response before the timeout."""


class ResponseTooLarge(Exception):
    """The response is larger than the client accepts."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection: sends one request at a time, parses its response."""

    __slots__ = (
        "body",
        "close_delimited",
        "expires",
        "header_bytes",
        "headers_done",
        "last_used",
        "parser",
        "pool",
        "size",
        "status",
        "transport",
        "waiter",
    )

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Response] | None = None
        self.body: list[bytes] = []
        self.size = 0
        self.status = 0
        self.header_bytes = 0
        self.headers_done = False
        self.close_delimited = True
        self.last_used = 0.0
        self.expires = 0.0  # loop time the request in flight gives up (no-timeout requests)

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            if self.headers_done and self.close_delimited and exc is None:
                self._complete()  # a body that ends with the connection
            else:
                why = f": {exc}" if exc is not None else ""
                waiter.set_exception(
                    ConnectionClosed(f"the connection closed before a complete response{why}")
                )
        self.waiter = None
        self.pool._lost(self)

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # nothing was asked: a server speaking out of turn
            self._fail(ProtocolError("the server sent data no request asked for"))
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ProtocolError("the server switched protocols"))
        except httptools.HttpParserError as exc:
            cause = exc.__context__  # httptools wraps what our callbacks raise
            known = isinstance(cause, ResponseTooLarge | ProtocolError)
            self._fail(cause if known else ProtocolError(str(exc)))  # type: ignore[arg-type]

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self.waiter is None:  # a second response in the same read as the first
            raise ProtocolError("the server sent a response no request asked for")
        self.body = []
        self.size = 0
        self.header_bytes = 0
        self.headers_done = False
        self.close_delimited = True

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value)
        if self.header_bytes > _MAX_HEADER_BYTES:
            raise ResponseTooLarge("the response headers are larger than 64 KiB")
        if len(name) == 14 and name.lower() == b"content-length":
            self.close_delimited = False
            if value.isdigit() and int(value) > self.pool.max_response:
                raise ResponseTooLarge(self._too_large())
        elif len(name) == 17 and name.lower() == b"transfer-encoding":
            self.close_delimited = False

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.pool.max_response:
            raise ResponseTooLarge(self._too_large())
        self.body.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200:
            return  # an interim response (100 Continue): the real one follows
        keep_alive = self.parser.should_keep_alive()
        self._complete()
        if not keep_alive and self.transport is not None:
            self.transport.close()

    # the request side

    def send(self, data: bytes, body: bytes, waiter: asyncio.Future[Response]) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            raise ConnectionClosed("the connection closed before the request was written")
        self.waiter = waiter
        self.headers_done = False
        if len(body) > _WRITE_SEPARATELY:
            transport.writelines((data, body))
        else:
            transport.write(data + body)

    def _complete(self) -> None:
        waiter = self.waiter
        self.waiter = None
        body = self.body
        result = (self.status, body[0] if len(body) == 1 else b"".join(body))
        self.body = []
        if waiter is not None and not waiter.done():
            waiter.set_result(result)

    def _fail(self, error: Exception) -> None:
        waiter = self.waiter
        self.waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self.abort()

    def _too_large(self) -> str:
        return f"the response is larger than the limit of {self.pool.max_response} bytes"

    @property
    def reusable(self) -> bool:
        transport = self.transport
        return transport is not None and not transport.is_closing() and self.waiter is None

    def abort(self) -> None:
        """Drop the connection now (its state is unknown: a request may be in flight)."""
        if self.transport is not None:
            self.transport.abort()


class ConnectionPool:
    """Keep-alive HTTP/1.1 connections to one ``host:port``, at most ``size`` at once."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        size: int = 256,
        idle_timeout: float = 15.0,
        connect_timeout: float = 10.0,
        max_response: int = 64 * 1024 * 1024,
        request_timeout: float = 300.0,
        ssl: ssl_module.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> None:
        if size < 1:
            raise ValueError(f"a connection pool needs at least one connection, not {size}")
        self.host, self.port = host, port
        self.size = size
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.max_response = max_response
        self.request_timeout = request_timeout
        self._tick = min(1.0, max(0.01, request_timeout / 10))
        self._watchdog: asyncio.TimerHandle | None = None
        self.ssl = ssl
        self.server_hostname = server_hostname if ssl is not None else None
        self._idle: list[_Connection] = []  # most recently used last
        self._all: set[_Connection] = set()
        self._opening = 0
        self._waiters: collections.deque[asyncio.Future[_Connection | None]] = collections.deque()
        self._closed = False
        self._drained: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def connections(self) -> int:
        """Connections open or being opened now."""
        return len(self._all) + self._opening

    @property
    def idle(self) -> int:
        return len(self._idle)

    async def request(self, head: bytes, body: bytes, timeout: float | None = None) -> Response:
        """Send one request (``head`` ends with the blank line) and return (status, body).

        ``timeout`` bounds the whole exchange, waiting for a connection included, with a timer
        of its own; without one the pool's ``request_timeout`` applies, checked by one
        watchdog for all the pool's connections (a timer per request costs more than the rest
        of this method).
        """
        loop = self._loop
        if loop is None or not loop.is_running():
            loop = self._bind_loop()
        now = loop.time()
        connection = self._take(now)
        if connection is None:
            connection = await self._acquire(loop, timeout)
        waiter: asyncio.Future[Response] = loop.create_future()
        timer = None
        if timeout is not None:
            timer = loop.call_later(timeout, _expire, waiter)
        else:
            connection.expires = now + self.request_timeout
            if self._watchdog is None:
                self._watchdog = loop.call_later(self._tick, self._watch, loop)
        try:
            connection.send(head, body, waiter)
            result = await waiter
        except BaseException:
            connection.abort()  # cancelled, timed out or failed: its state is unknown
            raise
        finally:
            if timer is not None:
                timer.cancel()
        connection.last_used = now
        self._release(connection)
        return result

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        """Remember the running loop (asking for it costs a getpid() syscall on Python 3.11).
        A pool's connections belong to one loop, so it refuses to run on another."""
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop:
            raise RuntimeError(
                f"this channel to {self.host}:{self.port} was used on another event loop; "
                "make a channel (a client) per event loop"
            )
        self._loop = loop
        return loop

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fail requests older than ``request_timeout``; run again while any is in flight."""
        self._watchdog = None
        now = loop.time()
        busy = False
        for connection in list(self._all):
            if connection.waiter is not None:
                if connection.expires <= now:
                    connection._fail(ResponseTimeout("no response before the timeout"))
                else:
                    busy = True
        if busy and not self._closed:
            self._watchdog = loop.call_later(self._tick, self._watch, loop)

    def _take(self, now: float) -> _Connection | None:
        idle = self._idle
        while idle:
            connection = idle.pop()
            if connection.reusable and now - connection.last_used < self.idle_timeout:
                return connection
            connection.abort()
        return None

    async def _acquire(self, loop: asyncio.AbstractEventLoop, timeout: float | None) -> _Connection:
        if self._closed:
            raise ConnectFailed("the channel is closed")
        started = loop.time()
        while True:
            if self.connections < self.size:
                return await self._connect(loop, timeout)
            waiter: asyncio.Future[_Connection | None] = loop.create_future()
            self._waiters.append(waiter)
            timer = None if timeout is None else loop.call_later(timeout, _expire, waiter)
            try:
                connection = await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    # A connection (or a free slot) was handed over just as we gave up.
                    handed = waiter.result()
                    if handed is not None:
                        self._release(handed)
                    else:
                        self._wake()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
                raise
            finally:
                if timer is not None:
                    timer.cancel()
            if connection is not None:
                return connection
            if timeout is not None:  # a slot was freed: open a connection in it
                timeout = max(0.0, timeout - (loop.time() - started))

    async def _connect(self, loop: asyncio.AbstractEventLoop, timeout: float | None) -> _Connection:
        limit = self.connect_timeout if timeout is None else min(timeout, self.connect_timeout)
        self._opening += 1
        try:
            async with asyncio.timeout(limit):
                _, connection = await loop.create_connection(
                    lambda: _Connection(self),
                    self.host,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.server_hostname,
                )
        except TimeoutError:
            raise ConnectFailed(f"connecting to {self.host}:{self.port} timed out") from None
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise ConnectFailed(f"cannot connect to {self.host}:{self.port}: {reason}") from exc
        finally:
            self._opening -= 1
            if self.connections < self.size:
                self._wake_if_waiting()
        if self._closed:
            connection.abort()
            raise ConnectFailed("the channel is closed")
        self._all.add(connection)
        return connection

    def _release(self, connection: _Connection) -> None:
        if not connection.reusable:
            return  # it is closing: _lost frees its slot
        if self._closed:
            connection.abort()
            return
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        self._idle.append(connection)

    def _lost(self, connection: _Connection) -> None:
        """A connection closed (either side): free its slot for someone waiting."""
        self._all.discard(connection)
        if connection in self._idle:
            self._idle.remove(connection)
        self._wake()
        if self._drained is not None and not self._all and not self._drained.done():
            self._drained.set_result(None)

    def _wake(self) -> None:
        """Tell the first waiter a slot is free (it opens a connection itself)."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _wake_if_waiting(self) -> None:
        if self._waiters:
            self._wake()

    async def aclose(self, timeout: float = 1.0) -> None:
        """Close every connection; calls in flight fail with :class:`ConnectionClosed`."""
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(ConnectFailed("the channel is closed"))
        self._waiters.clear()
        self._idle.clear()
        if not self._all:
            return
        self._drained = asyncio.get_running_loop().create_future()
        for connection in list(self._all):
            connection.abort()
        try:
            async with asyncio.timeout(timeout):
                await self._drained
        except TimeoutError:
            pass


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(ResponseTimeout("no response before the timeout"))
