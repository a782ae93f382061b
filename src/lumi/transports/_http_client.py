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
  it, over memory BIOs (:class:`~lumi.transports.tls_server.TlsClientConnection`); nothing
  else changes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl as ssl_module
from typing import Any

from lumi.transports._http_connection import (
    ClientConnection,
    ConnectFailed,
    ConnectionClosed,
    ProtocolError,
    Response,
    ResponseTimeout,
    ResponseTooLarge,
)
from lumi.transports.tls_server import TlsClientConnection

_NEVER = float("inf")

__all__ = [
    "ConnectFailed",
    "ConnectionClosed",
    "ConnectionPool",
    "ProtocolError",
    "Response",
    "ResponseTimeout",
    "ResponseTooLarge",
]


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
        self._watchdog: asyncio.TimerHandle | None = None
        self._watch_at = _NEVER  # loop time the watchdog runs next
        self.ssl = ssl
        self.server_hostname = server_hostname if ssl is not None else None
        self._idle: list[ClientConnection] = []  # most recently used last
        self._all: set[ClientConnection] = set()
        self._opening = 0
        self._waiters: collections.deque[asyncio.Future[ClientConnection | None]] = (
            collections.deque()
        )
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

        ``timeout`` bounds the whole exchange, waiting for a connection included; without one
        the pool's ``request_timeout`` applies. Both are checked by one watchdog timer for all
        the pool's connections, armed for the earliest expiry (a timer per request costs more
        than the rest of this method).
        """
        loop = self._loop
        if loop is None or not loop.is_running():
            loop = self._bind_loop()
        now = loop.time()
        connection = self._take(now)
        if connection is None:
            started = now
            connection = await self._acquire(loop, timeout)
            now = loop.time()
            if timeout is not None:
                timeout = max(0.0, timeout - (now - started))
        waiter: asyncio.Future[Response] = loop.create_future()
        expires = now + (self.request_timeout if timeout is None else timeout)
        connection.expires = expires
        if expires < self._watch_at:
            self._arm(loop, expires)
        try:
            connection.send(head, body, waiter)
            result = await waiter
        except BaseException:
            connection.abort()  # cancelled, timed out or failed: its state is unknown
            raise
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

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._watchdog = loop.call_at(when, self._watch, loop)
        self._watch_at = when

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fail requests past their expiry; run again at the next expiry while any request is
        in flight (one set meanwhile rearms it only if it expires sooner)."""
        self._watchdog, self._watch_at = None, _NEVER
        now = loop.time()
        soonest = _NEVER
        for connection in list(self._all):
            if connection.waiter is not None:
                if connection.expires <= now:
                    connection._fail(ResponseTimeout("no response before the timeout"))
                elif connection.expires < soonest:
                    soonest = connection.expires
        if soonest < _NEVER and not self._closed:
            self._arm(loop, soonest)

    def _take(self, now: float) -> ClientConnection | None:
        idle = self._idle
        while idle:
            connection = idle.pop()
            if connection.reusable and now - connection.last_used < self.idle_timeout:
                return connection
            connection.abort()
        return None

    async def _acquire(
        self, loop: asyncio.AbstractEventLoop, timeout: float | None
    ) -> ClientConnection:
        if self._closed:
            raise ConnectFailed("the channel is closed")
        started = loop.time()
        while True:
            if self.connections < self.size:
                return await self._connect(loop, timeout)
            waiter: asyncio.Future[ClientConnection | None] = loop.create_future()
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

    async def _connect(
        self, loop: asyncio.AbstractEventLoop, timeout: float | None
    ) -> ClientConnection:
        limit = self.connect_timeout if timeout is None else min(timeout, self.connect_timeout)
        self._opening += 1
        try:
            async with asyncio.timeout(limit):
                connection = ClientConnection(self.max_response, self._lost)
                if self.ssl is None:
                    await loop.create_connection(lambda: connection, self.host, self.port)
                else:  # TLS over memory BIOs (lumi.transports.tls_server)
                    name = self.server_hostname or self.host
                    tls = TlsClientConnection(self.ssl, connection, name)
                    await loop.create_connection(lambda: tls, self.host, self.port)
                    try:
                        await tls.handshake
                    except BaseException:
                        if tls.raw is not None:
                            tls.raw.abort()
                        raise
        except BaseException as exc:
            self._opening -= 1
            self._wake()  # the slot this call held is free for the next in line
            if isinstance(exc, TimeoutError):
                if timeout is not None and timeout <= self.connect_timeout:
                    # The caller's time ran out, not the connect timeout: say so, rather than
                    # leave it to a clock comparison (asyncio timers may fire a tick early).
                    raise ResponseTimeout("no connection before the timeout") from None
                raise ConnectFailed(f"connecting to {self.host}:{self.port} timed out") from None
            if isinstance(exc, OSError):
                reason = exc.strerror or str(exc) or type(exc).__name__
                raise ConnectFailed(f"cannot connect to {self.host}:{self.port}: {reason}") from exc
            raise
        self._opening -= 1
        if self._closed:
            connection.abort()
            raise ConnectFailed("the channel is closed")
        self._all.add(connection)
        return connection

    def _release(self, connection: ClientConnection) -> None:
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

    def _lost(self, connection: ClientConnection) -> None:
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

    async def aclose(self, timeout: float = 1.0) -> None:
        """Close every connection; calls in flight fail with :class:`ConnectionClosed`."""
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog, self._watch_at = None, _NEVER
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
