"""TLS for servers on asyncio (Lumi's HTTP and Thrift, any third-party transport): handshakes
and records over memory BIOs.

Why not ``loop.create_server(ssl=...)``: when a handshake fails — a client certificate that has
expired or comes from another CA — asyncio's and uvloop's SSL protocols drop the connection
without sending the TLS alert, so the client only sees the connection end and cannot tell why.
Here the alert is sent and the connection closed gracefully: the server stops writing and
discards what the client still sends for a moment, so the close is not a reset that would
destroy the alert in flight. A caller is told "certificate expired" or "unknown CA", and a
Lumi channel turns that into UNAUTHENTICATED. The same OpenSSL calls do the work, measured no
slower than uvloop's built-in SSL (docs/security.md).

:class:`TlsConnection` wraps the protocol a server would use for plain connections; that
protocol sees a :class:`TlsTransport` whose ``get_extra_info("ssl_object")`` is the
connection's :class:`ssl.SSLObject` (so :func:`lumi.transports.tls.transport_identity` reads
the peer's certificate). A first byte that is not a TLS handshake record is a client speaking
plain text to a TLS port: ``on_plaintext`` may answer it before the connection is closed.
:func:`tls_factory` wraps a protocol factory for ``loop.create_server``.

:class:`TlsClientConnection` is the same for a client (Lumi's HTTP channels): asyncio's and
uvloop's SSL transports put a layer of Python (or Cython) buffering and flow control around
the same OpenSSL calls for every record; here a request is one ``SSLObject.write`` and one
socket write, and a response one ``read``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any

log = logging.getLogger("lumi.tls")

HANDSHAKE_TIMEOUT = 10.0
LINGER = 2.0  # seconds a refused connection is read (and discarded) before it is dropped
_HANDSHAKE_RECORD = 0x16
# The largest TLS record's plaintext. read() allocates this much per call before shrinking
# the result, so a larger size costs more per request (256 KiB crosses malloc's mmap threshold).
_READ = 16 * 1024


class TlsTransport(asyncio.Transport):
    """The transport the wrapped protocol writes to: plaintext in, TLS records out."""

    def __init__(self, connection: TlsConnection) -> None:
        super().__init__()
        self._connection = connection

    def write(self, data: bytes | bytearray | memoryview) -> None:
        c = self._connection
        if c.raw is None or c.closing:
            return
        c.records.write(data)
        c.raw.write(c.outgoing.read())

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def close(self) -> None:
        self._connection.close()

    def abort(self) -> None:
        if self._connection.raw is not None:
            self._connection.raw.abort()

    def is_closing(self) -> bool:
        return self._connection.raw is None or self._connection.closing

    def can_write_eof(self) -> bool:
        return False

    def pause_reading(self) -> None:
        if self._connection.raw is not None:
            self._connection.raw.pause_reading()

    def resume_reading(self) -> None:
        if self._connection.raw is not None:
            self._connection.raw.resume_reading()

    def is_reading(self) -> bool:
        raw = self._connection.raw
        return raw is not None and raw.is_reading()

    def get_write_buffer_size(self) -> int:
        raw = self._connection.raw
        return 0 if raw is None else raw.get_write_buffer_size()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if self._connection.raw is not None:
            self._connection.raw.set_write_buffer_limits(high, low)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        c = self._connection
        if name == "ssl_object":
            return c.sslobj
        if name == "peercert":
            return c.sslobj.getpeercert()
        if name == "cipher":
            return c.sslobj.cipher()
        if name == "sslcontext":
            return c.context
        return default if c.raw is None else c.raw.get_extra_info(name, default)


class TlsConnection(asyncio.Protocol):
    """One server-side TLS connection wrapping ``app`` (a plain-connection protocol)."""

    def __init__(
        self,
        context: ssl.SSLContext,
        app: asyncio.Protocol,
        *,
        on_plaintext: Callable[[bytes], bytes] | None = None,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        server_hostname: str | None = None,
    ) -> None:
        self.context = context
        self.app = app
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.sslobj = context.wrap_bio(
            self.incoming,
            self.outgoing,
            server_side=context.protocol != ssl.PROTOCOL_TLS_CLIENT,
            server_hostname=server_hostname,
        )
        # The C object under ssl.SSLObject: its read/write/pending are the same calls without
        # a Python frame each, which is most of what a small record costs besides the crypto.
        self.records: Any = getattr(self.sslobj, "_sslobj", self.sslobj)
        self.transport = TlsTransport(self)
        self.raw: asyncio.Transport | None = None
        self.handshaking = True
        self.closing = False
        self._refused = False
        self._first = True
        self._on_plaintext = on_plaintext
        self._handshake_timeout = handshake_timeout
        self._timer: asyncio.TimerHandle | None = None

    # the raw connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.raw = transport  # type: ignore[assignment]
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._handshake_timeout, self._handshake_expired)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.raw = None
        if not self.handshaking:
            self.app.connection_lost(exc)

    def pause_writing(self) -> None:
        if not self.handshaking:
            self.app.pause_writing()

    def resume_writing(self) -> None:
        if not self.handshaking:
            self.app.resume_writing()

    def eof_received(self) -> bool | None:
        if self.handshaking or self._refused:
            return None  # close
        self.app.eof_received()
        return None

    def data_received(self, data: bytes) -> None:
        if self._refused or self.raw is None:
            return  # lingering after a refusal: discard
        if self._first:
            self._first = False
            if data[0] != _HANDSHAKE_RECORD:
                self._plaintext(data)
                return
        self.incoming.write(data)
        if self.handshaking and not self._handshake():
            return
        records, incoming = self.records, self.incoming
        while True:
            try:
                chunk = records.read(_READ)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLError as exc:
                self._read_failed(exc)
                return
            if not chunk:  # the peer's close_notify (read() returns b"" for it)
                self.app.eof_received()
                self.close()
                return
            self.app.data_received(chunk)
            if self.raw is None or self.closing:
                return
            if not incoming.pending and not records.pending():
                break  # all consumed: no need to be told so by an SSLWantReadError
        if self.outgoing.pending and self.raw is not None:
            self.raw.write(self.outgoing.read())  # key updates, session tickets

    def _read_failed(self, exc: ssl.SSLError) -> None:
        assert self.raw is not None
        log.info("closing a TLS connection from %s: %s", self._peer(), _reason(exc))
        self.raw.abort()

    # the handshake

    def _handshake(self) -> bool:
        """Advance the handshake; True once done (the wrapped protocol is then connected)."""
        assert self.raw is not None
        try:
            self.sslobj.do_handshake()
        except ssl.SSLWantReadError:
            if self.outgoing.pending:
                self.raw.write(self.outgoing.read())
            return False
        except ssl.SSLError as exc:
            self._refuse(exc)
            return False
        self.handshaking = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.outgoing.pending:
            self.raw.write(self.outgoing.read())
        self.app.connection_made(self.transport)
        return True

    def _refuse(self, exc: ssl.SSLError) -> None:
        """Send the alert, stop writing, and drop the connection after a short linger."""
        assert self.raw is not None
        log.info("refused a TLS connection from %s: %s", self._peer(), _reason(exc))
        self._refused = True
        if self.outgoing.pending:
            self.raw.write(self.outgoing.read())
        if self.raw.can_write_eof():
            self.raw.write_eof()
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(LINGER, self._drop)

    def _plaintext(self, data: bytes) -> None:
        assert self.raw is not None
        answer = self._on_plaintext(data) if self._on_plaintext is not None else b""
        self._refused = True
        if answer:
            self.raw.write(answer)
        if self.raw.can_write_eof():
            self.raw.write_eof()
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(LINGER, self._drop)

    def _handshake_expired(self) -> None:
        if self.handshaking and self.raw is not None:
            log.info("closing a TLS connection from %s: no handshake within %gs", self._peer(),
                     self._handshake_timeout)  # fmt: skip
            self.raw.abort()

    def _drop(self) -> None:
        if self.raw is not None:
            self.raw.abort()

    def _peer(self) -> str:
        peer = self.raw.get_extra_info("peername") if self.raw is not None else None
        return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "a client"

    # used by TlsTransport

    def close(self) -> None:
        """Send close_notify and close (buffered writes are flushed first)."""
        if self.raw is None or self.closing:
            return
        self.closing = True
        if not self.handshaking:
            try:
                self.sslobj.unwrap()
            except ssl.SSLError:
                pass  # the peer's close_notify is not awaited
            if self.outgoing.pending:
                self.raw.write(self.outgoing.read())
        self.raw.close()


class TlsClientConnection(TlsConnection):
    """One client-side TLS connection wrapping ``app``; ``handshake`` is done once the
    connection is ready for ``app`` (or fails with the handshake's :class:`ssl.SSLError`)."""

    def __init__(
        self,
        context: ssl.SSLContext,
        app: asyncio.Protocol,
        server_hostname: str | None,
        *,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
    ) -> None:
        super().__init__(
            context, app, handshake_timeout=handshake_timeout, server_hostname=server_hostname
        )
        self._first = False  # no plaintext check: the server speaks first after our hello
        self._error: BaseException | None = None
        self.handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._handshake()  # the ClientHello

    def connection_lost(self, exc: Exception | None) -> None:
        error = self._error or exc
        if not self.handshake.done():
            self.handshake.set_exception(
                error or ConnectionResetError("the server closed the connection in the handshake")
            )
        if self._timer is not None:
            self._timer.cancel()
        self.raw = None
        if not self.handshaking:
            self.app.connection_lost(error if isinstance(error, Exception) else exc)

    def _handshake(self) -> bool:
        done = super()._handshake()
        if done and not self.handshake.done():
            self.handshake.set_result(None)
        return done

    def _refuse(self, exc: ssl.SSLError) -> None:
        # our verdict on the server's certificate: send the alert, and the caller is told why
        assert self.raw is not None
        self._error = exc
        if self.outgoing.pending:
            self.raw.write(self.outgoing.read())
        self.raw.abort()

    def _read_failed(self, exc: ssl.SSLError) -> None:
        # e.g. TLS 1.3: the server's alert refusing our certificate comes after our handshake
        # finished; the wrapped protocol is told why its connection ended.
        assert self.raw is not None
        self._error = exc
        self.raw.abort()

    def _handshake_expired(self) -> None:
        if self.handshaking and self.raw is not None:
            self._error = TimeoutError(f"no TLS handshake within {self._handshake_timeout:g}s")
            self.raw.abort()


def _reason(exc: ssl.SSLError) -> str:
    text = getattr(exc, "verify_message", None) or exc.reason or str(exc)
    return str(text).lower().replace("_", " ")


def tls_factory(
    context: ssl.SSLContext,
    factory: Callable[[], asyncio.Protocol],
    *,
    on_plaintext: Callable[[bytes], bytes] | None = None,
) -> Callable[[], asyncio.Protocol]:
    """A protocol factory for ``loop.create_server`` serving ``factory``'s protocols over TLS
    with ``context`` (``Tls.server_context()``)."""
    return lambda: TlsConnection(context, factory(), on_plaintext=on_plaintext)
