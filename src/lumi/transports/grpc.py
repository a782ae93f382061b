"""The gRPC transport: a ``grpc.aio`` server for the ``.proto`` ``lumi gen proto`` writes.

Wire contract::

    /<package>.<service>.<Service>/<Method>   request <Method>Request, response <Method>Response
                                              (the result in field ``value``)
      metadata      x-correlation-id, traceparent, idempotency-key, authorization (Bearer),
                    x-lumi-user (read only from a caller with a verified certificate)
      deadline      the gRPC deadline (grpc-timeout)
      errors        the gRPC status code of the same number as Lumi's code, the message as the
                    status message, and google.rpc.Status in ``grpc-status-details-bin`` with an
                    ErrorInfo (reason: the code, domain ``lumi``) and the details as a
                    google.protobuf.Value (a StringValue holding JSON when a Value would round
                    numbers)
    grpc.health.v1.Health      SERVING once started and ready, NOT_SERVING while draining
    grpc.reflection.v1alpha    the service's file descriptors (so grpcurl / buf curl work)

The descriptors are built in-process from the interface (:func:`lumi.codegen.proto.proto_schema`,
the walk that renders the ``.proto``), with field numbers from the lock: no protoc step. The
server hands the dispatcher JSON, like every transport, so the whole pipeline is shared;
conversion is in :mod:`lumi.transports._proto_codec`.

With ``ServerSettings.tls`` the server requires a client certificate of the app's CA (grpcio
offers no "ask, but accept calls without one" mode, so public methods are reachable without a
certificate over HTTP and Thrift only) and takes the caller's identity from gRPC's verified
``peer_spiffe_id``; renewed certificates are served to new connections. A channel with
``ChannelSettings.tls`` checks the callee's certificate names ``server_name`` and moves to a
new connection when its own certificate is renewed.
"""

# ruff: noqa: E402 - gRPC core's experiments must be chosen before grpc is imported (below)
from __future__ import annotations

import asyncio
import os
import sys

# gRPC core reads GRPC_EXPERIMENTS once, when grpc is imported. Its EventEngine listener hands
# each connection's reads to a pool of its own threads; the older listener reads on the thread
# that polls the completion queue (grpc.aio's poller): ~4.5 fewer context switches and ~11% less
# server CPU per unary call, for the raw servicer as for Lumi (bench/rpc_bench.py
# ``raw-grpc-tuned``). Only if grpc is not loaded yet and the user chose no experiments, and
# only for the import, so child processes do not inherit it.
_GRPC_EXPERIMENTS = "-event_engine_listener"
if "grpc" not in sys.modules and "GRPC_EXPERIMENTS" not in os.environ:
    os.environ["GRPC_EXPERIMENTS"] = _GRPC_EXPERIMENTS
    try:
        import grpc
    finally:
        del os.environ["GRPC_EXPERIMENTS"]

import functools
import logging
import socket
import time
from collections.abc import Mapping
from typing import Any

import grpc
import grpc.aio
import pydantic_core
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, struct_pb2, wrappers_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from lumi.codegen.proto import proto_schema
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
from lumi.pipeline import Call, Handler
from lumi.pipeline.edge import check_metadata, inbound_metadata
from lumi.transports import idl
from lumi.transports._proto_codec import MessageCodec, ServiceCodec
from lumi.transports.base import (
    Channel,
    ChannelSettings,
    Health,
    Server,
    ServerSettings,
    Transport,
)
from lumi.transports.idl import IdlOptions
from lumi.transports.tls import Tls

log = logging.getLogger("lumi.grpc")


_DETAILS_KEY = "grpc-status-details-bin"
_DOMAIN = "lumi"
_TO_GRPC = {code: grpc.StatusCode[code.value] for code in StatusCode}
_FROM_GRPC = {grpc_code.value[0]: code for code, grpc_code in _TO_GRPC.items()}
_SAFE_INT = 2**53
_NOT_CONNECTED = ("failed to connect", "Connection refused", "connections to all backends failing")
_TLS_FAILED = ("andshake", "CERTIFICATE_VERIFY_FAILED", "ertificate", "erification", "SSL_ERROR")
# A TLS server that refuses our certificate closes the connection mid-handshake; a server
# that is down or restarting refuses the connection instead.
_REFUSED_HANDSHAKE = "Socket closed"
_EMPTY_ARGS = b"{}"


@functools.lru_cache(maxsize=256)
def service_codec(
    iface: ServiceInterface, package: str = "lumi", lock: str | None = None
) -> ServiceCodec:
    """The (cached) codec of ``iface``; ``lock`` is the ``proto`` lock section as JSON text."""
    section = pydantic_core.from_json(lock) if lock else None
    return ServiceCodec(proto_schema(iface, package, section))


def lock_text(lock: Mapping[str, Any] | None) -> str | None:
    """A lock section as the hashable text :func:`service_codec` caches by."""
    return None if not lock else pydantic_core.to_json(lock).decode()


# -- errors ------------------------------------------------------------------------------------


def status_details(error: LumiError) -> bytes:
    """``google.rpc.Status`` for ``error``, serialized for ``grpc-status-details-bin``."""
    status = status_pb2.Status(code=error.code.grpc_value, message=error.message)
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=error.code.value, domain=_DOMAIN))
    status.details.append(info)
    if error.details is not None:
        packed = any_pb2.Any()
        packed.Pack(_details_value(error.details))
        status.details.append(packed)
    return status.SerializeToString()  # type: ignore[no-any-return]


def _details_value(details: Any) -> Any:
    if _exact_in_value(details):
        value = struct_pb2.Value()
        value.MergeFrom(_to_value(details))
        return value
    return wrappers_pb2.StringValue(value=pydantic_core.to_json(details, fallback=repr).decode())


def _exact_in_value(value: Any) -> bool:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return True
    if isinstance(value, int):
        return abs(value) <= _SAFE_INT
    if isinstance(value, float):
        return value == value and value not in (float("inf"), float("-inf"))
    if isinstance(value, list):
        return all(_exact_in_value(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _exact_in_value(v) for k, v in value.items())
    return False


def _to_value(data: Any) -> struct_pb2.Value:
    value = struct_pb2.Value()
    if data is None:
        value.null_value = struct_pb2.NULL_VALUE
    elif isinstance(data, bool):
        value.bool_value = data
    elif isinstance(data, int | float):
        value.number_value = data
    elif isinstance(data, str):
        value.string_value = data
    elif isinstance(data, list):
        value.list_value.values.extend(_to_value(v) for v in data)
    else:
        for key, item in data.items():
            value.struct_value.fields[key].CopyFrom(_to_value(item))
    return value


def _from_value(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        number = value.number_value
        return int(number) if number.is_integer() and abs(number) <= _SAFE_INT else number
    if kind == "list_value":
        return [_from_value(v) for v in value.list_value.values]
    if kind == "struct_value":
        return {k: _from_value(v) for k, v in value.struct_value.fields.items()}
    if kind in ("string_value", "bool_value"):
        return getattr(value, kind)
    return None


def error_from_rpc(exc: grpc.aio.AioRpcError, what: str, *, tls: bool = False) -> LumiError:
    """The Lumi error an RPC failed with: rebuilt from the rich status when the server sent
    one, else from the status code (a transport failure); ``tls``: the channel is TLS."""
    for key, raw in exc.trailing_metadata() or ():
        if key == _DETAILS_KEY and isinstance(raw, bytes):
            status = status_pb2.Status.FromString(raw)
            details = None
            for packed in status.details:
                if packed.Is(struct_pb2.Value.DESCRIPTOR):
                    value = struct_pb2.Value()
                    packed.Unpack(value)
                    details = _from_value(value)
                elif packed.Is(wrappers_pb2.StringValue.DESCRIPTOR):
                    text = wrappers_pb2.StringValue()
                    packed.Unpack(text)
                    details = pydantic_core.from_json(text.value)
            code = _FROM_GRPC.get(status.code, StatusCode.UNKNOWN)
            return LumiError.for_code(code)(status.message, details)
    code = _FROM_GRPC.get(exc.code().value[0], StatusCode.UNKNOWN)
    message = exc.details() or code.value
    if code is StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded(f"{what} did not answer before the deadline")
    if code is StatusCode.UNAVAILABLE:
        # No rich status: gRPC itself failed. Connecting failed → nothing was sent; anything
        # else (a reset, a closed socket) happened after the call went out.
        if any(sign in message for sign in _TLS_FAILED):
            return LumiError.for_code(StatusCode.UNAUTHENTICATED)(
                f"{what}: the TLS handshake failed: {message}"
            )
        if tls and _REFUSED_HANDSHAKE in message and "failed to connect" in message:
            return LumiError.for_code(StatusCode.UNAUTHENTICATED)(
                f"{what}: the server closed the connection during the TLS handshake: it did not "
                f"accept this caller's certificate (expired, or not from the app's CA)"
            )
        if any(sign in message for sign in _NOT_CONNECTED):
            return NotSent(f"cannot reach {what}: {message}")
        return Lost(f"{what}: connection lost: {message}")
    return LumiError.for_code(code)(f"{what}: {message}")


# -- server ------------------------------------------------------------------------------------


class _Health(health_aio.HealthServicer):  # type: ignore[misc]
    """grpc.health.v1: Check answers from the replica's one :class:`Health` (as HTTP's
    ``/readyz`` does); Watch follows serving/draining."""

    def __init__(self, names: list[str], health: Health) -> None:
        super().__init__()
        self.names = names
        self.health = health

    async def Check(self, request: Any, context: Any) -> Any:
        if request.service and request.service not in self.names:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service}")
        ok, _ = await self.health.ready()
        status = health_pb2.HealthCheckResponse
        return status(status=status.SERVING if ok else status.NOT_SERVING)

    async def serve_all(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse
        value = status.SERVING if serving else status.NOT_SERVING
        for name in ["", *self.names]:
            await self.set(name, value)


class _Method:
    """Serves one RPC: protobuf in, JSON through the pipeline, protobuf out."""

    __slots__ = ("handler", "method", "request", "response", "secure", "service", "wraps_value")

    def __init__(
        self,
        handler: Handler,
        service: str,
        method: str,
        request: MessageCodec,
        response: MessageCodec,
        secure: bool = False,
    ) -> None:
        self.handler = handler
        self.secure = secure  # served over TLS: the caller is the peer's certificate
        self.service = service
        self.method = method
        self.request = request
        self.response = response
        self.wraps_value = "value" in response.cls.DESCRIPTOR.fields_by_name

    async def __call__(self, data: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        peer = context.auth_context().get("peer_spiffe_id") if self.secure else None
        try:  # the caller is the certificate verified by the TLS handshake, if any
            metadata = inbound_metadata(
                context.invocation_metadata() or (), peer=peer[0].decode() if peer else None
            )
        except LumiError as exc:  # the caller's bad metadata: refused before any work
            details = ((_DETAILS_KEY, status_details(exc)),)
            await context.abort(_TO_GRPC[exc.code], exc.message, trailing_metadata=details)
            raise
        remaining = context.time_remaining()
        if remaining is not None:
            metadata.deadline = time.time() + remaining
        if metadata.correlation_id:
            context.set_trailing_metadata((("x-correlation-id", metadata.correlation_id),))
        try:
            body = pydantic_core.to_json(self.request.decode(data))
            result = await self.handler(Call(self.service, self.method, body, metadata))
            if not self.wraps_value:
                return b""
            return self.response.encode({"value": pydantic_core.from_json(result)})
        except LumiError as exc:
            trailers: tuple[tuple[str, str | bytes], ...] = ((_DETAILS_KEY, status_details(exc)),)
            if metadata.correlation_id:
                trailers += (("x-correlation-id", metadata.correlation_id),)
            await context.abort(_TO_GRPC[exc.code], exc.message, trailing_metadata=trailers)
            raise  # abort raises; this line is for the type checker


class _GenericOnly:
    """The part of a server the generated ``add_*_to_server`` helpers use, keeping only their
    generic handlers (they also register each method, which rare calls do not pay back)."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service: str, handlers: Any) -> None:
        """Dropped: the generic handler just added serves the same methods."""


class GrpcServer(Server):
    """Serves a handler over gRPC on ``host:port`` (port 0 picks a free one).

    ``options`` give the proto package prefix and the ``proto`` lock section (default: this
    process's, :mod:`lumi.transports.idl`), so what is served is what ``lumi gen proto`` wrote.
    """

    def __init__(
        self,
        handler: Handler,
        settings: ServerSettings,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        options: IdlOptions | None = None,
    ) -> None:
        self.handler = handler
        self.settings = settings
        chosen = options or idl.current()
        lock = lock_text(chosen.lock("proto"))
        self.codecs = {
            name: service_codec(iface, chosen.package, lock)
            for name, iface in settings.interfaces.items()
        }
        self._host, self._port = host, port
        self._server: grpc.aio.Server | None = None
        self._health = _Health([c.service for c in self.codecs.values()], settings.health)
        self._endpoint = ""

    @property
    def endpoint(self) -> str:
        if not self._endpoint:
            raise RuntimeError("the server is not started")
        return self._endpoint

    async def start(self) -> None:
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", self.settings.max_body),
                ("grpc.max_send_message_length", self.settings.max_body),
                ("grpc.so_reuseport", 1),  # the supervisor holds the port with SO_REUSEPORT
            ]
        )
        for name, codec in self.codecs.items():
            handlers = {
                rpc: grpc.unary_unary_rpc_method_handler(
                    # a bound coroutine method: grpc.aio tells async behaviours by inspection
                    _Method(
                        self.handler, name, method, request, response, self.settings.tls is not None
                    ).__call__
                )
                for method, (rpc, request, response) in codec.methods.items()
            }
            # Registered (not generic) handlers: gRPC core matches their paths itself, which
            # measured ~20% less server CPU per call than a generic handler.
            server.add_registered_method_handlers(codec.service, handlers)
        # Health and reflection as generic handlers only: grpc.aio keeps one pending request
        # per registered method and waits on all of them for every call it accepts (about
        # 0.35 µs per pending request in asyncio.wait); their four methods are rarely called.
        generic_only = _GenericOnly(server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, generic_only)
        names = [c.service for c in self.codecs.values()]
        names += [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name]
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
            reflection.aio.ReflectionServicer(
                [*names, reflection.SERVICE_NAME], pool=self._reflection_pool()
            ),
            generic_only,
        )
        address = f"{self._host}:{self._port}"
        tls = self.settings.tls
        if tls is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, _server_credentials(tls))
        if port == 0:
            raise OSError(f"gRPC cannot listen on {self._host}:{self._port}")
        await server.start()
        self._server = server
        self._endpoint = f"grpc://{self._host}:{port}"
        self.settings.health.serving = True
        await self._health.serve_all(True)

    def _reflection_pool(self) -> descriptor_pool.DescriptorPool:
        """One pool with every file served here (each codec has its own, private pool)."""
        pool = descriptor_pool.DescriptorPool()
        files = [health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR]
        seen: set[str] = set()
        for file in [*files, *(f for c in self.codecs.values() for f in _with_deps(c.file))]:
            if file.name not in seen:
                seen.add(file.name)
                pool.Add(descriptor_pb2.FileDescriptorProto.FromString(file.serialized_pb))
        return pool

    async def aclose(self) -> None:
        """Report NOT_SERVING, stop accepting, let in-flight calls finish (bounded)."""
        if self._server is None:
            return
        self.settings.health.draining = True
        await self._health.serve_all(False)
        await self._server.stop(self.settings.grace_period)
        self._server = None


def _server_credentials(tls: Tls) -> grpc.ServerCredentials:
    """Credentials that give each new connection the certificate in use (renewals included)."""

    def configuration() -> Any:
        pem = tls.pem
        return grpc.ssl_server_certificate_configuration([(pem.key, pem.cert)], pem.ca)

    served = [tls.generation]

    def fetch() -> Any:
        if tls.generation == served[0]:
            return None  # keep the current one
        served[0] = tls.generation
        return configuration()

    return grpc.dynamic_ssl_server_credentials(
        configuration(), fetch, require_client_authentication=True
    )


def _channel_credentials(tls: Tls) -> grpc.ChannelCredentials:
    pem = tls.pem
    return grpc.ssl_channel_credentials(pem.ca, pem.key or None, pem.cert or None)


# -- channel -----------------------------------------------------------------------------------


class GrpcChannel(Channel):
    """Calls one gRPC endpoint (``grpc://host:port``) over one HTTP/2 connection."""

    def __init__(
        self,
        endpoint: str,
        *,
        interface: ServiceInterface,
        options: IdlOptions | None = None,
        max_message: int = 64 * 1024 * 1024,
        settings: ChannelSettings | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.target = endpoint.removeprefix("grpc://").rstrip("/")
        self.settings = settings or ChannelSettings()
        self._generation = -1
        chosen = options or idl.current()
        self.codec = service_codec(interface, chosen.package, lock_text(chosen.lock("proto")))
        self._max = max_message
        self._channel: grpc.aio.Channel | None = None
        self._stubs: dict[str, tuple[Any, MessageCodec, MessageCodec]] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def _stub(self, method: str) -> tuple[Any, MessageCodec, MessageCodec]:
        found = self._stubs.get(method)
        if found is not None:
            return found
        entry = self.codec.methods.get(method)
        if entry is None:
            raise NotFound(
                f"{self.codec.service} has no method {method!r}; methods: "
                f"{', '.join(sorted(self.codec.methods)) or '(none)'}"
            )
        if self._channel is None:
            self._channel = self._connect()
        rpc, request, response = entry
        stub = self._channel.unary_unary(f"/{self.codec.service}/{rpc}")
        self._stubs[method] = found = (stub, request, response)
        return found

    def _connect(self) -> grpc.aio.Channel:
        options: list[tuple[str, str | int]] = [
            ("grpc.max_receive_message_length", self._max),
            ("grpc.max_send_message_length", self._max),
            ("grpc.enable_retries", 0),  # Lumi's resilience layer decides retries
        ]
        tls = self.settings.tls
        if tls is None:
            return grpc.aio.insecure_channel(self.target, options=options)
        self._generation = tls.generation
        if self.settings.server_name:
            options.append(("grpc.ssl_target_name_override", self.settings.server_name))
        return grpc.aio.secure_channel(self.target, _channel_credentials(tls), options=options)

    def _renewed(self) -> None:
        """Our certificate was renewed: new calls go over a new connection presenting it;
        calls in flight finish on the old one, which is then closed."""
        old = self._channel
        self._channel = None
        self._stubs.clear()
        if old is not None:
            task = asyncio.get_running_loop().create_task(old.close(grace=60.0))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def call(self, call: Call) -> bytes:
        check_metadata(call.metadata)  # what the callee's edge would refuse is not sent
        tls = self.settings.tls
        if tls is not None and tls.generation != self._generation and self._channel is not None:
            self._renewed()
        stub, request, response = self._stub(call.method)
        try:
            arguments = pydantic_core.from_json(call.body or _EMPTY_ARGS)
        except ValueError as exc:
            raise InvalidArgument(f"arguments are not JSON: {exc}") from None
        data = request.encode(arguments)
        meta = call.metadata
        timeout = None
        if meta.deadline is not None:
            timeout = meta.deadline - time.time()
            if timeout <= 0:
                raise DeadlineExceeded(
                    f"deadline passed before calling {call.service}.{call.method}"
                )
        try:
            answer = await stub(data, timeout=timeout, metadata=_outbound(meta))
        except grpc.aio.AioRpcError as exc:
            what = f"{call.service}.{call.method} at {self.endpoint}"
            raise error_from_rpc(exc, what, tls=tls is not None) from None
        return pydantic_core.to_json(response.decode(answer).get("value"))

    async def aclose(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
            self._stubs.clear()
        for task in list(self._closing):
            await task


def _with_deps(file: Any) -> list[Any]:
    """``file`` after the files it imports (a pool needs dependencies first)."""
    out = []
    for dependency in file.dependencies:
        out += _with_deps(dependency)
    return [*out, file]


def _outbound(meta: Metadata) -> tuple[tuple[str, str], ...]:
    pairs = []
    if meta.correlation_id:
        pairs.append(("x-correlation-id", meta.correlation_id))
    if meta.traceparent:
        pairs.append(("traceparent", meta.traceparent))
    if meta.idempotency_key:
        pairs.append(("idempotency-key", meta.idempotency_key))
    if meta.user is not None:
        pairs.append(("x-lumi-user", meta.user.to_header()))
    if meta.authorization:
        pairs.append(("authorization", meta.authorization))
    if meta.relayed_caller is not None:
        pairs.append(("x-lumi-relayed-caller", meta.relayed_caller or "-"))
    return tuple(pairs)


async def probe(
    endpoint: str, *, timeout: float, service: str = "", settings: ChannelSettings | None = None
) -> None:
    """Ask ``endpoint``'s grpc.health.v1 service; raise ConnectionError unless SERVING."""
    target = endpoint.removeprefix("grpc://").rstrip("/")
    tls = settings.tls if settings else None
    if tls is None:
        opened = grpc.aio.insecure_channel(target)
    else:
        name = settings.server_name if settings else None
        options = [("grpc.ssl_target_name_override", name)] if name else []
        opened = grpc.aio.secure_channel(target, _channel_credentials(tls), options=options)
    async with opened as channel:
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        try:
            answer = await check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise ConnectionError(f"{endpoint}: {exc.code().name}: {exc.details()}") from None
    if answer.status != health_pb2.HealthCheckResponse.SERVING:
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
        raise ConnectionError(f"{endpoint} is {status}")


def reserve_port(host: str, port: int) -> socket.socket:
    """Hold ``host:port`` for a gRPC server in another process: bound with SO_REUSEPORT but
    not listening, so the server (which sets SO_REUSEPORT too) binds the same port and the
    kernel gives every connection to it, the only listener."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class GrpcTransport(Transport):
    """gRPC (HTTP/2, protobuf): ``grpc.aio`` servers for the generated ``.proto``, with
    health and reflection; channels over one HTTP/2 connection per endpoint."""

    name = "grpc"
    supports_tls = True

    def __init__(self, options: IdlOptions | None = None) -> None:
        self.options = options  # None: this process's (lumi.transports.idl.configure)

    def bind(self, host: str, port: int) -> socket.socket:
        """Hold the port with SO_REUSEPORT, not listening: gRPC cannot adopt a socket, so the
        replica's server binds the same port (see :func:`reserve_port`)."""
        return reserve_port(host, port)

    def server(self, handler: Handler, sock: socket.socket, settings: ServerSettings) -> Server:
        host, port = sock.getsockname()[:2]
        return GrpcServer(handler, settings, host=host, port=port, options=self.options)

    def channel(
        self,
        endpoint: str,
        interface: ServiceInterface | None = None,
        settings: ChannelSettings | None = None,  # gRPC/Thrift multiplex: one connection
    ) -> Channel:
        if interface is None:
            raise ValueError(f"a gRPC channel to {endpoint} needs the callee's interface")
        return GrpcChannel(endpoint, interface=interface, options=self.options, settings=settings)

    async def probe(
        self, endpoint: str, *, timeout: float = 2.0, settings: ChannelSettings | None = None
    ) -> None:
        await probe(endpoint, timeout=timeout, settings=settings)
