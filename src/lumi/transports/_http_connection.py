"""One client connection of ``_http_client.py``: writes a request, parses its response with
httptools, and says how the exchange ended (the errors below)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

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


class ClientConnection(asyncio.Protocol):
    """One keep-alive connection: sends one request at a time, parses its response."""

    __slots__ = (
        "body",
        "close_delimited",
        "expires",
        "header_bytes",
        "headers_done",
        "last_used",
        "max_response",
        "on_lost",
        "parser",
        "size",
        "status",
        "transport",
        "waiter",
    )

    def __init__(self, max_response: int, on_lost: Callable[[ClientConnection], None]) -> None:
        self.max_response = max_response
        self.on_lost = on_lost
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
                closed = ConnectionClosed(f"the connection closed before a complete response{why}")
                closed.__cause__ = exc  # e.g. the TLS alert a server refused our certificate with
                waiter.set_exception(closed)
        self.waiter = None
        self.on_lost(self)

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
            if value.isdigit() and int(value) > self.max_response:
                raise ResponseTooLarge(self._too_large())
        elif len(name) == 17 and name.lower() == b"transfer-encoding":
            self.close_delimited = False

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.max_response:
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
        return f"the response is larger than the limit of {self.max_response} bytes"

    @property
    def reusable(self) -> bool:
        transport = self.transport
        return transport is not None and not transport.is_closing() and self.waiter is None

    def abort(self) -> None:
        """Drop the connection now (its state is unknown: a request may be in flight)."""
        if self.transport is not None:
            self.transport.abort()
