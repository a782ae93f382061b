"""The HTTP/JSON transport (the default).

Wire contract::

    POST /<service>/<method>        body: the JSON arguments object (empty body = {})
      request headers   content-type: application/json, x-correlation-id, traceparent,
                        x-lumi-deadline (absolute, unix epoch milliseconds), idempotency-key,
                        authorization (Bearer, for public methods), x-lumi-user (the end
                        user, read only from a caller with a verified certificate)
      200               the JSON result
      4xx/5xx           {"code": "NOT_FOUND", "message": "...", "details": ...}; the HTTP status
                        is ``StatusCode.http_status`` (413 body too large, 415 not JSON)
    GET /healthz   200 while the process is alive
    GET /readyz    200 when ready to serve, 503 otherwise (starting, draining, a check failing)
    GET /interface the interfaces served here: {"<service>": <interface JSON>, ...}
    GET /metrics   Prometheus metrics (and any other admin route the runtime adds)

The server is Lumi's own lean HTTP/1.1 protocol on httptools (see ``_http_server.py`` for why;
bench/http_bench.py compares it with FastAPI and a bare ASGI app on uvicorn). A channel talks to
one endpoint over pooled keep-alive connections (aiohttp) and maps a connection that could not
be made to :class:`~lumi.model.errors.NotSent`; balancing over replicas is the pipeline's.

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

import aiohttp
import pydantic_core

from lumi.model.context import Metadata, User
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
from lumi.pipeline.call import Call, Handler
from lumi.transports._http_server import PEER, HttpListener, Request, Response, ServerState
from lumi.transports.base import (
    AdminRoute,
    Channel,
    ChannelSettings,
    Health,
    Server,
    ServerSettings,
    Transport,
)
from lumi.transports.tls import handshake_failure

log = logging.getLogger("lumi.http")

_JSON = b"application/json"
_HEADER_FIELDS = {
    b"x-correlation-id": "correlation_id",
    b"traceparent": "traceparent",
    b"idempotency-key": "idempotency_key",
    b"authorization": "authorization",
}


def error_body(error: LumiError) -> bytes:
    return pydantic_core.to_json(error.to_wire(), fallback=repr)


class _Router:
    """Answers one parsed request: POST calls go to the handler, GETs to the built-in routes."""

    def __init__(self, handler: Handler, settings: ServerSettings) -> None:
        self.handler = handler
        self.health = settings.health
        self.max_body = settings.max_body
        interfaces = settings.interfaces
        body = json.dumps({n: i.to_dict() for n, i in interfaces.items()}, sort_keys=True)
        self.routes: dict[bytes, AdminRoute] = {
            b"/healthz": _static(200, "application/json", b'{"status":"ok"}'),
            b"/readyz": self._readyz,
            b"/interface": _static(200, "application/json", body.encode()),
            **{path.encode(): route for path, route in settings.admin.items()},
        }

    async def __call__(self, request: Request) -> Response:
        method, path, headers, body = request
        if method == b"POST":
            return await self._call(path, headers, body)
        route = self.routes.get(path)
        if route is not None and method in (b"GET", b"HEAD"):
            status, content_type, payload = await route()
            return status, content_type.encode(), payload, []
        if route is not None:
            return _error(InvalidArgument(f"use GET {path.decode('latin-1')}"), 405)
        error = InvalidArgument(f"use POST /<service>/<method> (got {method.decode('latin-1')})")
        return _error(error, 405)

    async def _call(
        self, path: bytes, headers: list[tuple[bytes, bytes]], body: bytes | None
    ) -> Response:
        metadata = Metadata()
        content_type = b""
        correlation: list[tuple[bytes, bytes]] = []
        user: bytes | None = None
        for name, value in headers:
            field = _HEADER_FIELDS.get(name)
            if field is not None:
                setattr(metadata, field, value.decode("latin-1"))
                if field == "correlation_id":
                    correlation = [(b"x-correlation-id", value)]
            elif name == PEER:  # the verified client certificate's identity
                metadata.caller = value.decode()
            elif name == b"x-lumi-user":
                user = value
            elif name == b"content-type":
                content_type = value
            elif name == b"x-lumi-deadline":
                try:
                    metadata.deadline = float(value) / 1000.0
                except ValueError:
                    return _error(
                        InvalidArgument("x-lumi-deadline is not a number"), None, correlation
                    )
        if user is not None and metadata.caller is not None:  # relayed by an identified peer
            try:
                metadata.user = User.from_header(user.decode("latin-1"))
            except LumiError as exc:
                return _error(exc, None, correlation)
        parts = path.decode("utf-8", "replace").split("/")
        if len(parts) != 3 or not parts[1] or not parts[2]:
            return _error(NotFound(f"no route {'/'.join(parts)!r}; use /<service>/<method>"))
        if body is None:
            return _error(_too_large(self.max_body), 413, correlation)
        if body and content_type and not _is_json(content_type):
            error = InvalidArgument(
                f"content-type must be application/json, not {content_type.decode('latin-1')!r}"
            )
            return _error(error, 415, correlation)
        try:
            result = await self.handler(Call(parts[1], parts[2], body, metadata))
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


def _too_large(limit: int) -> LumiError:
    return LumiError.for_code(StatusCode.RESOURCE_EXHAUSTED)(
        f"request body is larger than the limit of {limit} bytes"
    )


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
        self._state = ServerState(self.router, self.settings.max_body, keep_alive_timeout)
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
    """Calls one HTTP endpoint over pooled keep-alive connections (at most ``pool_size``)."""

    def __init__(
        self, endpoint: str, *, pool_size: int = 100, settings: ChannelSettings | None = None
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None
        tls = settings.tls if settings else None
        self._ssl: ssl.SSLContext | bool = tls.client_context() if tls else False
        self._server_name = settings.server_name if settings else None
        self._base = self.endpoint.replace("http://", "https://", 1) if tls else self.endpoint

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._pool_size, keepalive_timeout=15, enable_cleanup_closed=False
            )
            self._session = aiohttp.ClientSession(
                connector=connector, skip_auto_headers=("User-Agent",), raise_for_status=False
            )
        return self._session

    async def call(self, call: Call) -> bytes:
        session = self._client()
        headers = _request_headers(call.metadata)
        timeout = None
        if call.metadata.deadline is not None:
            remaining = call.metadata.deadline - time.time()
            if remaining <= 0:
                raise DeadlineExceeded(
                    f"deadline passed before calling {call.service}.{call.method}"
                )
            timeout = aiohttp.ClientTimeout(total=remaining)
        url = f"{self._base}/{call.service}/{call.method}"
        try:
            async with session.post(
                url,
                data=call.body,
                headers=headers,
                timeout=timeout,
                ssl=self._ssl,
                server_hostname=self._server_name,
            ) as resp:
                body = await resp.read()
                if resp.status == 200:
                    return body
                error = _remote_error(resp.status, body)
        except aiohttp.ClientSSLError as exc:
            raise handshake_failure(_ssl_error(exc), f"{call.service} at {self.endpoint}") from None
        except aiohttp.ClientConnectorError as exc:
            raise NotSent(f"{self.endpoint}: {exc.os_error.strerror or exc}") from exc
        except TimeoutError:
            raise DeadlineExceeded(
                f"{call.service}.{call.method} did not answer before the deadline"
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            refused = _ssl_error(exc)
            if refused is not None:  # TLS 1.3: the server's verdict on our certificate
                raise handshake_failure(refused, f"{call.service} at {self.endpoint}") from None
            raise Lost(  # sent, then the connection broke: retried only if idempotent
                f"{call.service}.{call.method} at {self.endpoint}: {type(exc).__name__}: {exc}"
            ) from exc
        raise error

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class HttpTransport(Transport):
    """HTTP/1.1 with JSON bodies: Lumi's own server, aiohttp channels."""

    name = "http"

    def __init__(self, *, pool_size: int = 100) -> None:
        self.pool_size = pool_size

    def server(self, handler: Handler, sock: socket.socket, settings: ServerSettings) -> Server:
        return HttpServer(handler, settings, sock=sock)

    supports_tls = True

    def channel(
        self,
        endpoint: str,
        interface: ServiceInterface | None = None,
        settings: ChannelSettings | None = None,
    ) -> Channel:
        return HttpChannel(endpoint, pool_size=self.pool_size, settings=settings)

    async def probe(
        self, endpoint: str, *, timeout: float = 2.0, settings: ChannelSettings | None = None
    ) -> None:
        client_timeout = aiohttp.ClientTimeout(total=timeout)
        tls = settings.tls if settings else None
        base = endpoint.rstrip("/")
        if tls is not None:
            base = base.replace("http://", "https://", 1)
        try:
            async with (
                aiohttp.ClientSession(timeout=client_timeout) as session,
                session.get(
                    f"{base}/readyz",
                    ssl=tls.client_context() if tls else False,
                    server_hostname=settings.server_name if settings else None,
                ) as resp,
            ):
                if resp.status == 200:
                    return
                raise ConnectionError(f"{endpoint} answered {resp.status}")
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ConnectionError(f"{endpoint}: {type(exc).__name__}: {exc}".rstrip(": ")) from None


def _request_headers(metadata: Metadata) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if metadata.correlation_id:
        headers["x-correlation-id"] = metadata.correlation_id
    if metadata.traceparent:
        headers["traceparent"] = metadata.traceparent
    if metadata.deadline is not None:
        headers["x-lumi-deadline"] = str(int(metadata.deadline * 1000))
    if metadata.idempotency_key:
        headers["idempotency-key"] = metadata.idempotency_key
    if metadata.user is not None:
        headers["x-lumi-user"] = metadata.user.to_header()
    if metadata.authorization:
        headers["authorization"] = metadata.authorization
    return headers


def _ssl_error(exc: BaseException) -> ssl.SSLError | None:
    """The ``ssl.SSLError`` behind an aiohttp error, if TLS is what failed."""
    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = getattr(seen, "os_error", None) or seen.__cause__ or seen.__context__
    return None


def _remote_error(status: int, body: bytes) -> LumiError:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and "code" in data:
        return LumiError.from_wire(data)
    code = next((c for c in StatusCode if c.http_status == status), StatusCode.UNKNOWN)
    return LumiError.for_code(code)(f"HTTP {status}: {body[:200].decode('utf-8', 'replace')}")
