"""The HTTP/JSON transport (the default).

Wire contract::

    POST /<service>/<method>        body: the JSON arguments object (empty body = {})
      request headers   content-type: application/json, x-correlation-id, traceparent,
                        x-lumi-deadline (absolute, unix epoch milliseconds), idempotency-key,
                        x-lumi-caller
      200               the JSON result
      4xx/5xx           {"code": "NOT_FOUND", "message": "...", "details": ...}; the HTTP status
                        is ``StatusCode.http_status`` (413 body too large, 415 not JSON)
    GET /healthz   200 while the process is alive
    GET /readyz    200 when ready to serve, 503 otherwise (starting, draining, a check failing)
    GET /interface the interfaces served here: {"<service>": <interface JSON>, ...}

The server is Lumi's own lean HTTP/1.1 protocol on httptools (see ``_http_server.py`` for why;
bench/http_bench.py compares it with FastAPI and a bare ASGI app on uvicorn).
The client keeps pooled keep-alive connections (aiohttp), balances over a service's replicas
round-robin, and maps connection failures to UNAVAILABLE.
"""

from __future__ import annotations

import itertools
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import aiohttp
import pydantic_core

from lumi.model.context import Metadata
from lumi.model.errors import (
    DeadlineExceeded,
    InvalidArgument,
    LumiError,
    NotFound,
    StatusCode,
)
from lumi.model.interface import ServiceInterface
from lumi.pipeline import Call, Handler
from lumi.pipeline.outcome import Lost, NotSent
from lumi.runtime_services.resilience.breaker import Breakers, CircuitOpen
from lumi.transports._http_server import HttpListener, Request, Response, ServerState
from lumi.transports.base import Channel, Server

log = logging.getLogger("lumi.http")

DEFAULT_MAX_BODY = 4 * 1024 * 1024
Route = Callable[[], Awaitable[tuple[int, str, bytes]]]
"""An extra GET route: returns (status, content type, body)."""
ReadyCheck = Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]

_JSON = b"application/json"
_HEADER_FIELDS = {
    b"x-correlation-id": "correlation_id",
    b"traceparent": "traceparent",
    b"idempotency-key": "idempotency_key",
    b"x-lumi-caller": "caller",
}


def error_body(error: LumiError) -> bytes:
    return pydantic_core.to_json(error.to_wire(), fallback=repr)


class _Router:
    """Answers one parsed request: POST calls go to the handler, GETs to the built-in routes."""

    def __init__(
        self,
        handler: Handler,
        interfaces: Mapping[str, ServiceInterface],
        routes: Mapping[str, Route],
        ready: ReadyCheck | None,
    ) -> None:
        self.handler = handler
        self.ready = ready
        self.draining = False
        self.started = False
        body = json.dumps({n: i.to_dict() for n, i in interfaces.items()}, sort_keys=True)
        self.routes: dict[bytes, Route] = {
            b"/healthz": _static(200, "application/json", b'{"status":"ok"}'),
            b"/readyz": self._readyz,
            b"/interface": _static(200, "application/json", body.encode()),
            **{path.encode(): route for path, route in routes.items()},
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
        for name, value in headers:
            field = _HEADER_FIELDS.get(name)
            if field is not None:
                setattr(metadata, field, value.decode("latin-1"))
                if field == "correlation_id":
                    correlation = [(b"x-correlation-id", value)]
            elif name == b"content-type":
                content_type = value
            elif name == b"x-lumi-deadline":
                try:
                    metadata.deadline = float(value) / 1000.0
                except ValueError:
                    return _error(
                        InvalidArgument("x-lumi-deadline is not a number"), None, correlation
                    )
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

    max_body = DEFAULT_MAX_BODY

    async def _readyz(self) -> tuple[int, str, bytes]:
        if self.draining:
            return 503, "application/json", b'{"status":"draining"}'
        if not self.started:
            return 503, "application/json", b'{"status":"starting"}'
        checks: dict[str, Any] = {}
        ok = True
        if self.ready is not None:
            ok, checks = await self.ready()
        body = json.dumps({"status": "ready" if ok else "not ready", "checks": checks})
        return (200 if ok else 503), "application/json", body.encode()


def _static(status: int, content_type: str, body: bytes) -> Route:
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
    """Serves a handler over HTTP on ``host:port`` (port 0 picks a free one) or on ``sock``."""

    def __init__(
        self,
        handler: Handler,
        *,
        interfaces: Mapping[str, ServiceInterface] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        sock: socket.socket | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        routes: Mapping[str, Route] | None = None,
        ready: ReadyCheck | None = None,
        grace_period: float = 10.0,
        keep_alive_timeout: float = 30.0,
    ) -> None:
        self.router = _Router(handler, interfaces or {}, routes or {}, ready)
        self.router.max_body = max_body
        self._state = ServerState(self.router, max_body, keep_alive_timeout)
        self._listener: HttpListener | None = None
        self._sock = sock
        self._host, self._port = host, port
        self._grace = grace_period
        self._address = ""

    @property
    def address(self) -> str:
        if not self._address:
            raise RuntimeError("the server is not started")
        return self._address

    async def start(self) -> None:
        if self._sock is None:
            # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets whose proto says
            # TCP, and without it small responses wait 40 ms for a delayed ACK.
            self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.bind((self._host, self._port))
            self._sock.listen(1024)
        self._sock.setblocking(False)
        host, port = self._sock.getsockname()[:2]
        self._address = f"http://{host}:{port}"
        self._listener = HttpListener(self._state)
        await self._listener.start(self._sock)
        self.router.started = True

    async def aclose(self) -> None:
        """Stop accepting, finish in-flight calls (up to the grace period), close."""
        self.router.draining = True
        if self._listener is not None:
            await self._listener.close(self._grace)
            self._listener = None


class HttpChannel(Channel):
    """Calls a service over HTTP, round-robin over its replicas' endpoints.

    With ``breakers``, each endpoint has its own circuit breaker: an endpoint whose circuit is
    open is skipped, and when every endpoint's is open the call fails at once with UNAVAILABLE.
    """

    def __init__(
        self, endpoints: Sequence[str], *, pool_size: int = 100, breakers: Breakers | None = None
    ) -> None:
        if not endpoints:
            raise ValueError("an HTTP channel needs at least one endpoint")
        self.breakers = breakers
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self._next = itertools.cycle(range(len(self.endpoints)))
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None

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
        start = next(self._next)
        failures: list[str] = []
        breakers = self.breakers
        # A connection that could not be made sent nothing, so trying the next replica is
        # safe for any method; failures after sending are left to the retry policy.
        for offset in range(len(self.endpoints)):
            endpoint = self.endpoints[(start + offset) % len(self.endpoints)]
            breaker = None if breakers is None else breakers.get(endpoint)
            if breaker is not None and not breaker.allow():
                failures.append(f"{endpoint}: circuit open")
                continue
            url = f"{endpoint}/{call.service}/{call.method}"
            try:
                async with session.post(
                    url, data=call.body, headers=headers, timeout=timeout
                ) as resp:
                    body = await resp.read()
                    if resp.status == 200:
                        if breaker is not None:
                            breaker.success()
                        return body
                    error = _remote_error(resp.status, body)
            except aiohttp.ClientConnectorError as exc:
                if breaker is not None:
                    breaker.failure()
                failures.append(f"{endpoint}: {exc.os_error.strerror or exc}")
                continue
            except TimeoutError:
                if breaker is not None:
                    breaker.failure()
                raise DeadlineExceeded(
                    f"{call.service}.{call.method} did not answer before the deadline"
                ) from None
            except (aiohttp.ClientError, OSError) as exc:
                if breaker is not None:
                    breaker.failure()
                raise Lost(  # sent, then the connection broke
                    f"{call.service}.{call.method} at {endpoint}: {type(exc).__name__}: {exc}"
                ) from exc
            if breaker is not None:
                breaker.record(error.code)
            raise error
        if failures and all(f.endswith(": circuit open") for f in failures):
            raise CircuitOpen(
                f"circuit open for every endpoint of {call.service}",
                {"endpoints": self.endpoints},
            )
        raise NotSent(f"cannot reach {call.service}: {'; '.join(failures)}")

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


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
    if metadata.caller:
        headers["x-lumi-caller"] = metadata.caller
    return headers


def _remote_error(status: int, body: bytes) -> LumiError:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and "code" in data:
        return LumiError.from_wire(data)
    code = next((c for c in StatusCode if c.http_status == status), StatusCode.UNKNOWN)
    return LumiError.for_code(code)(f"HTTP {status}: {body[:200].decode('utf-8', 'replace')}")
