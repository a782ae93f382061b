"""The HTTP/JSON transport (the default).

Wire contract::

    POST /<service>/<method>        body: the JSON arguments object (empty body = {})
      request headers   content-type: application/json, x-correlation-id, traceparent,
                        x-lumi-deadline (absolute, unix epoch milliseconds), idempotency-key,
                        authorization (Bearer, for public methods), x-lumi-user (the end
                        user, read only from a caller with a verified certificate) — checked
                        by :func:`lumi.pipeline.edge.inbound_metadata`
      200               the JSON result
      4xx/5xx           {"code": "NOT_FOUND", "message": "...", "details": ...}; the HTTP status
                        is ``StatusCode.http_status`` (408 too slow, 413 body too large, 414 URL
                        too long, 415 not JSON, 431 headers too large)
    GET /healthz   200 while the process is alive
    GET /readyz    200 when ready to serve, 503 otherwise (starting, draining, a check failing)
    GET /interface the interfaces served here: {"<service>": <interface JSON>, ...}
    GET /metrics   Prometheus metrics (and any other admin route the runtime adds)

The server is Lumi's own lean HTTP/1.1 protocol on httptools (see ``_http_server.py`` for why;
bench/http_bench.py compares it with FastAPI and a bare ASGI app on uvicorn). A channel talks to
one endpoint over pooled keep-alive connections with Lumi's own client, also on httptools (see
``_http_client.py`` for why; bench/hop_bench.py compares a hop with an aiohttp peer), and maps
a connection that could not be made to :class:`~lumi.model.errors.NotSent`; balancing over
replicas is the pipeline's.

With ``ServerSettings.tls`` the server speaks HTTPS (mTLS: a client certificate is asked for,
and its verified SPIFFE identity is the call's ``caller``); a channel with
``ChannelSettings.tls`` connects with its certificate. The endpoint URL keeps the transport's
name (``http://``) either way.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import time
import urllib.parse
from collections.abc import Awaitable

import pydantic_core

from lumi.model.context import Metadata
from lumi.model.errors import (
    DeadlineExceeded,
    InvalidArgument,
    Lost,
    LumiError,
    NotFound,
    NotSent,
    StatusCode,
)
from lumi.model.interface import ServiceInterface
from lumi.pipeline.call import Call, Handler, bound
from lumi.pipeline.edge import CORRELATION_ID, check_metadata, excerpt, inbound_metadata
from lumi.transports._http_client import (
    ConnectFailed,
    ConnectionPool,
    ResponseTimeout,
    ResponseTooLarge,
)
from lumi.transports._http_server import PEER, HttpListener, Limits, Request, Response, ServerState
from lumi.transports.base import (
    AdminRoute,
    Channel,
    ChannelSettings,
    Endpoint,
    Health,
    Server,
    ServerSettings,
    Transport,
)
from lumi.transports.tls import handshake_failure

log = logging.getLogger("lumi.http")

_JSON = b"application/json"
_CORRELATION = CORRELATION_ID.encode()
_MAX_TARGETS = 4096  # request paths whose (service, method) a server keeps
_MAX_TARGET_LENGTH = 256  # longer paths are split on every call, never kept


def error_body(error: LumiError) -> bytes:
    return pydantic_core.to_json(error.to_wire(), fallback=repr)


class _Router:
    """Answers one parsed request: POST calls go to the handler, GETs to the built-in routes."""

    def __init__(self, handler: Handler, settings: ServerSettings) -> None:
        self.handler = handler
        self.health = settings.health
        self.targets: dict[bytes, tuple[str, str]] = {}  # path → (service, method)
        interfaces = settings.interfaces
        body = json.dumps({n: i.to_dict() for n, i in interfaces.items()}, sort_keys=True)
        self.routes: dict[bytes, AdminRoute] = {
            b"/healthz": _static(200, "application/json", b'{"status":"ok"}'),
            b"/readyz": self._readyz,
            b"/interface": _static(200, "application/json", body.encode()),
            **{path.encode(): route for path, route in settings.admin.items()},
        }

    def __call__(self, request: Request) -> Awaitable[Response]:
        # Not a coroutine itself: it hands over the one that answers (a frame less per call).
        method, path, headers, body = request
        if method == b"POST":
            return self._call(path, headers, body)
        return self._other(method, path)

    async def _other(self, method: bytes, path: bytes) -> Response:
        route = self.routes.get(path)
        if route is not None and method in (b"GET", b"HEAD"):
            status, content_type, payload = await route()
            return status, content_type.encode(), payload, []
        if route is not None:
            return _error(InvalidArgument(f"use GET {path.decode('latin-1')}"), 405)
        got = excerpt(method.decode("latin-1"))
        return _error(InvalidArgument(f"use POST /<service>/<method> (got {got})"), 405)

    async def _call(self, path: bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> Response:
        content_type = b""
        peer: str | None = None
        for name, value in headers:
            if name == b"content-type":
                content_type = value
            elif name == PEER:  # the verified client certificate's identity (first, if any)
                peer = value.decode()
        try:
            metadata = inbound_metadata(headers, peer=peer)
        except LumiError as exc:
            return _error(exc)
        # Echoed only once valid: what a Lumi client reads back is what the edge accepted.
        correlation = (
            [(_CORRELATION, metadata.correlation_id.encode())] if metadata.correlation_id else []
        )
        target = self.targets.get(path)
        if target is None:
            parts = path.decode("utf-8", "replace").split("/")
            if len(parts) != 3 or not parts[1] or not parts[2]:
                where = excerpt("/".join(parts), 64)
                return _error(
                    NotFound(f"no route {where!r}; use /<service>/<method>"), None, correlation
                )
            target = (parts[1], parts[2])
            # bounded in count and size (the paths come from callers): ~1 MiB at most
            if len(self.targets) < _MAX_TARGETS and len(path) <= _MAX_TARGET_LENGTH:
                self.targets[path] = target
        if body and content_type and content_type != _JSON and not _is_json(content_type):
            error = InvalidArgument(
                f"content-type must be application/json, not "
                f"{excerpt(content_type.decode('latin-1'))!r}"
            )
            return _error(error, 415, correlation)
        try:
            result = await self.handler(Call(target[0], target[1], body, metadata))
        except LumiError as exc:
            return _error(exc, None, correlation)
        return 200, _JSON, result, correlation

    async def _readyz(self) -> tuple[int, str, bytes]:
        ok, state = await self.health.ready()
        return (200 if ok else 503), "application/json", json.dumps(state).encode()


def _static(status: int, content_type: str, body: bytes) -> AdminRoute:
    async def route() -> tuple[int, str, bytes]:
        return status, content_type, body

    return route


def _is_json(content_type: bytes) -> bool:
    base = content_type.split(b";", 1)[0].strip().lower()
    return base == _JSON or (base.startswith(b"application/") and base.endswith(b"+json"))


def _error(
    error: LumiError, status: int | None = None, headers: list[tuple[bytes, bytes]] | None = None
) -> Response:
    return status or error.code.http_status, _JSON, error_body(error), headers or []


class HttpServer(Server):
    """Serves a handler over HTTP on ``sock`` (or a new socket on ``host:port``; 0: a free
    port)."""

    def __init__(
        self,
        handler: Handler,
        settings: ServerSettings | None = None,
        *,
        sock: socket.socket | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        keep_alive_timeout: float = 30.0,
    ) -> None:
        self.settings = settings or ServerSettings()
        self.router = _Router(handler, self.settings)
        limits = Limits(
            max_body=self.settings.max_body,
            header_timeout=self.settings.header_timeout,
            body_timeout=self.settings.body_timeout,
            keep_alive_timeout=keep_alive_timeout,
        )
        self._state = ServerState(bound(self.router), limits)
        self._listener: HttpListener | None = None
        self._sock = sock
        self._host, self._port = host, port
        self._endpoint = ""

    @property
    def health(self) -> Health:
        return self.settings.health

    @property
    def endpoint(self) -> str:
        if not self._endpoint:
            raise RuntimeError("the server is not started")
        return self._endpoint

    async def start(self) -> None:
        if self._sock is None:
            self._sock = HttpTransport().bind(self._host, self._port)
        self._sock.setblocking(False)
        host, port = self._sock.getsockname()[:2]
        self._endpoint = f"http://{host}:{port}"
        self._listener = HttpListener(self._state)
        tls = self.settings.tls
        await self._listener.start(self._sock, tls.server_context() if tls else None)
        self.health.serving = True

    async def aclose(self) -> None:
        """Stop accepting, finish in-flight calls (up to the grace period), close."""
        self.health.draining = True
        if self._listener is not None:
            await self._listener.close(self.settings.grace_period)
            self._listener = None


class HttpChannel(Channel):
    """Calls one HTTP endpoint over keep-alive connections, at most ``settings.pool_size`` of
    them (``_http_client.py``); calls beyond that many in flight wait for a free connection.

    A call without a deadline still gives up after ``request_timeout`` seconds, so a callee
    that never answers cannot hold a caller forever.
    """

    def __init__(
        self,
        endpoint: str,
        settings: ChannelSettings | None = None,
        *,
        request_timeout: float = 300.0,
        max_response: int = 64 * 1024 * 1024,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.settings = settings or ChannelSettings()
        parsed = Endpoint.parse(self.endpoint)
        self.pool = ConnectionPool(
            parsed.host,
            parsed.port,
            size=self.settings.pool_size,
            max_response=max_response,
            request_timeout=request_timeout,
            ssl=self.settings.ssl_context(),
            server_hostname=self.settings.server_name or parsed.host,
        )
        self.request_timeout = request_timeout
        self._host = f"{parsed.host}:{parsed.port}"
        self._heads: dict[tuple[str, str], bytes] = {}

    def _head(self, service: str, method: str) -> bytes:
        """The request line and fixed headers of one method, up to the content-length value."""
        found = self._heads.get((service, method))
        if found is None:
            target = urllib.parse.quote(f"/{service}/{method}")
            found = self._heads[(service, method)] = (
                f"POST {target} HTTP/1.1\r\nhost: {self._host}\r\n"
                "content-type: application/json\r\ncontent-length: "
            ).encode()
        return found

    async def call(self, call: Call) -> bytes:
        meta = call.metadata
        check_metadata(meta)  # what the callee's edge would refuse is not sent
        timeout = None  # the pool's request_timeout
        if meta.deadline is not None:
            timeout = meta.deadline - time.time()
            if timeout <= 0:
                raise DeadlineExceeded(
                    f"deadline passed before calling {call.service}.{call.method}"
                )
        body = call.body
        head = b"%b%d%b\r\n\r\n" % (
            self._head(call.service, call.method),
            len(body),
            _metadata_headers(meta),
        )
        try:
            status, answer = await self.pool.request(head, body, timeout)
        except ConnectFailed as exc:
            refused = _ssl_error(exc)
            if refused is not None:  # our verdict on its certificate, or its on ours (TLS 1.2)
                raise handshake_failure(refused, f"{call.service} at {self.endpoint}") from None
            if meta.deadline is not None and time.time() >= meta.deadline:
                # the connection was waited for until the deadline: the time is what ran out
                raise DeadlineExceeded(
                    f"{call.service}.{call.method}: no connection to {self.endpoint} before "
                    f"the deadline"
                ) from None
            raise NotSent(f"{self.endpoint}: {exc}") from exc
        except ResponseTimeout:
            within = "before the deadline" if timeout is not None else f"in {self.request_timeout}s"
            what = f"{call.service}.{call.method}"
            raise DeadlineExceeded(f"{what} did not answer {within}") from None
        except ResponseTooLarge as exc:
            raise LumiError.for_code(StatusCode.RESOURCE_EXHAUSTED)(
                f"{call.service}.{call.method} at {self.endpoint}: {exc}"
            ) from None
        except OSError as exc:
            refused = _ssl_error(exc)
            if refused is not None:  # TLS 1.3: the server's verdict on our certificate
                raise handshake_failure(refused, f"{call.service} at {self.endpoint}") from None
            raise Lost(  # sent, then the connection broke: retried only if idempotent
                f"{call.service}.{call.method} at {self.endpoint}: {type(exc).__name__}: {exc}"
            ) from exc
        if status == 200:
            return answer
        raise LumiError.from_http(status, answer)

    async def aclose(self) -> None:
        await self.pool.aclose()


class HttpTransport(Transport):
    """HTTP/1.1 with JSON bodies: Lumi's own server and client, both on httptools."""

    name = "http"

    def server(self, handler: Handler, sock: socket.socket, settings: ServerSettings) -> Server:
        return HttpServer(handler, settings, sock=sock)

    supports_tls = True

    def channel(
        self,
        endpoint: str,
        interface: ServiceInterface | None = None,
        settings: ChannelSettings | None = None,
    ) -> Channel:
        return HttpChannel(endpoint, settings)

    async def probe(
        self, endpoint: str, *, timeout: float = 2.0, settings: ChannelSettings | None = None
    ) -> None:
        parsed = Endpoint.parse(endpoint)
        tls = settings.ssl_context() if settings is not None else None
        name = (settings.server_name if settings is not None else None) or parsed.host
        pool = ConnectionPool(
            parsed.host, parsed.port, size=1, connect_timeout=timeout, ssl=tls, server_hostname=name
        )
        head = f"GET /readyz HTTP/1.1\r\nhost: {parsed.host}:{parsed.port}\r\n"
        head += "connection: close\r\n\r\n"
        try:
            status, _ = await pool.request(head.encode(), b"", timeout)
        except (OSError, ResponseTooLarge) as exc:
            raise ConnectionError(f"{endpoint}: {type(exc).__name__}: {exc}".rstrip(": ")) from None
        finally:
            await pool.aclose()
        if status != 200:
            raise ConnectionError(f"{endpoint} answered {status}")


def _metadata_headers(meta: Metadata) -> bytes:
    """The metadata as header lines, each after a CRLF. The values passed
    :func:`~lumi.pipeline.edge.check_metadata` (visible ASCII only, spaces in a token), so none
    can break out of its line. The caller is not sent: the callee reads it from the
    certificate."""
    correlation, traceparent, key = meta.correlation_id, meta.traceparent, meta.idempotency_key
    deadline = meta.deadline
    if correlation and traceparent and deadline is not None and meta.user is None:
        # what nearly every call carries, in one formatting operation
        text = f"\r\nx-correlation-id: {correlation}\r\ntraceparent: {traceparent}" + (
            f"\r\nx-lumi-deadline: {int(deadline * 1000)}"
        )
    else:
        text = ""
        if correlation:
            text += "\r\nx-correlation-id: " + correlation
        if traceparent:
            text += "\r\ntraceparent: " + traceparent
        if deadline is not None:
            text += f"\r\nx-lumi-deadline: {int(deadline * 1000)}"
        if meta.user is not None:
            text += "\r\nx-lumi-user: " + meta.user.to_header()
    if key:
        text += "\r\nidempotency-key: " + key
    if meta.authorization:
        text += "\r\nauthorization: " + meta.authorization
    if meta.relayed_caller is not None:
        text += "\r\nx-lumi-relayed-caller: " + (meta.relayed_caller or "-")
    return text.encode("ascii")


def _ssl_error(exc: BaseException) -> ssl.SSLError | None:
    """The ``ssl.SSLError`` behind a connection error, if TLS is what failed."""
    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
