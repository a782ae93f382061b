"""The transport contract: how calls travel. One :class:`Transport` per backend module.

A transport gives a runtime everything it needs to put a service on the wire:

* :meth:`Transport.bind` reserves a replica's address up front (the supervisor binds every
  replica's sockets before anything starts, so all endpoints are known and a restarted replica
  comes back on the same port);
* :meth:`Transport.server` serves a dispatcher's handler on that socket, with health and
  readiness in the transport's own idiom (``GET /readyz`` for HTTP, ``grpc.health.v1`` for
  gRPC) read from one shared :class:`Health`;
* :meth:`Transport.channel` makes the client side for *one* endpoint — a connection pool, no
  load balancing: choosing among replicas, failing over and circuit breaking are client-side
  middleware shared by every transport (:mod:`lumi.runtime_services.resilience.balancer`);
* :meth:`Transport.probe` asks an endpoint whether it is ready.

Mutual TLS goes through the same seam (:mod:`lumi.transports.tls`): a server given
``ServerSettings.tls`` speaks TLS, asks for a client certificate and puts the verified peer's
SPIFFE identity in ``Metadata.caller`` (a caller's claim is never read); a channel given
``ChannelSettings(tls=…, server_name=…)`` presents its certificate and accepts only a callee whose
certificate names ``server_name``. A transport that does so sets ``supports_tls``.

Endpoints are URLs whose scheme names the transport: ``http://127.0.0.1:8123``,
``grpc://127.0.0.1:9000``. A replica may serve several transports at once, one endpoint each.

Errors: a channel returns the callee's JSON result or raises the callee's
:class:`~lumi.model.errors.LumiError`. A call that never left (connection refused, no route)
raises :class:`~lumi.model.errors.NotSent`, which is UNAVAILABLE and tells a balancer another
replica may take it; anything lost after sending is plain UNAVAILABLE, left to the retry
policy, which knows the method's idempotency.
"""

from __future__ import annotations

import abc
import dataclasses
import socket
from collections.abc import Awaitable, Callable, Mapping
from ssl import SSLContext
from types import TracebackType
from typing import Any, ClassVar, Self
from urllib.parse import urlsplit

from lumi.model.interface import ServiceInterface
from lumi.pipeline.call import Call, Handler
from lumi.transports.tls import Tls

ReadyCheck = Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]
"""Readiness of what a replica hosts: ``(ready, details)``."""
AdminRoute = Callable[[], Awaitable[tuple[int, str, bytes]]]
"""An operator endpoint (``/metrics``): returns (status, content type, body)."""

DEFAULT_MAX_BODY = 4 * 1024 * 1024
DEFAULT_BACKLOG = 1024  # connections waiting to be accepted (the kernel caps it at somaxconn)


class Health:
    """The lifecycle state every server of one replica reports: starting → serving → draining."""

    def __init__(self, check: ReadyCheck | None = None) -> None:
        self.check = check
        self.serving = False
        self.draining = False

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        """``(ready, {"status": ..., "checks": ...})``."""
        if self.draining:
            return False, {"status": "draining"}
        if not self.serving:
            return False, {"status": "starting"}
        ok, checks = (True, {}) if self.check is None else await self.check()
        return ok, {"status": "ready" if ok else "not ready", "checks": checks}


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    """What a server needs besides its handler and socket.

    The limits hold on every transport: ``max_body`` bytes of arguments per call, enforced
    before they are buffered; a request's metadata (headers) must arrive within
    ``header_timeout`` seconds of its first byte and its body within ``body_timeout`` seconds
    after that, or the connection is closed. Metadata values are checked by
    :func:`lumi.pipeline.edge.inbound_metadata`.
    """

    interfaces: Mapping[str, ServiceInterface] = dataclasses.field(default_factory=dict)
    health: Health = dataclasses.field(default_factory=Health)
    max_body: int = DEFAULT_MAX_BODY
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    grace_period: float = 10.0
    admin: Mapping[str, AdminRoute] = dataclasses.field(default_factory=dict)
    # mTLS (lumi.transports.tls): the caller's identity is its verified certificate's
    tls: Tls | None = None


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """A parsed endpoint URL."""

    url: str
    transport: str
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        if not parts.scheme or not parts.hostname or parts.port is None:
            raise ValueError(f"{url!r} is not an endpoint like 'http://127.0.0.1:8123'")
        return cls(url.rstrip("/"), parts.scheme, parts.hostname, parts.port)


DEFAULT_POOL_SIZE = 256


@dataclasses.dataclass(frozen=True)
class ChannelSettings:
    """What a channel needs besides its endpoint (``defaults.pool_size`` and
    ``services.X.capabilities.Y.pool_size`` in config).

    ``pool_size`` bounds the connections a channel keeps to its endpoint: as many calls as that
    are in flight at once (HTTP/1.1 carries one per connection), later ones wait for a free
    connection. ``tls``, when set, makes the connections mTLS with that identity's certificate
    (renewed in place: new connections use the current one), and the callee's certificate must
    name ``server_name`` (:func:`lumi.security.identity.server_name`; None: the endpoint's
    host). ``ssl`` is a plain TLS context instead, for channels to servers outside the app.
    """

    pool_size: int = DEFAULT_POOL_SIZE
    tls: Tls | None = None
    server_name: str | None = None
    ssl: SSLContext | None = None

    def ssl_context(self) -> SSLContext | None:
        """The context connections are made with (None: plaintext)."""
        return self.tls.client_context() if self.tls is not None else self.ssl


def transport_of(url: str) -> str:
    """``"grpc://127.0.0.1:9000"`` → ``"grpc"``."""
    return url.partition("://")[0]


class Channel(abc.ABC):
    """Sends calls to one endpoint (one replica of one service)."""

    endpoint: str

    @abc.abstractmethod
    async def call(self, call: Call) -> bytes:
        """Send ``call``; return the JSON result or raise the callee's ``LumiError``
        (:class:`~lumi.model.errors.NotSent` when nothing was sent)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class Server(abc.ABC):
    """Serves a handler on one endpoint."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Start accepting calls; returns once it accepts them."""

    @property
    @abc.abstractmethod
    def endpoint(self) -> str:
        """Where clients reach it, e.g. ``http://127.0.0.1:8123``."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Stop accepting, let in-flight calls finish (bounded by the grace period), close."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class Transport(abc.ABC):
    """One way calls travel (HTTP/JSON, gRPC, ...): binding, serving, calling, probing."""

    name: ClassVar[str]
    supports_tls: ClassVar[bool] = False
    """True when servers take ``ServerSettings.tls`` and channels ``ChannelSettings.tls``."""

    def bind(self, host: str, port: int) -> socket.socket:
        """A socket reserving ``host:port`` (0: a free port) for one replica.

        By default a listening TCP socket: the replica serves on it (its fd is passed on), and
        while a replica restarts, connections wait in the backlog instead of failing.
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(DEFAULT_BACKLOG)
        except OSError:
            sock.close()
            raise
        return sock

    def endpoint_of(self, sock: socket.socket) -> str:
        """The endpoint URL of a socket from :meth:`bind`."""
        host, port = sock.getsockname()[:2]
        return f"{self.name}://{host}:{port}"

    @abc.abstractmethod
    def server(self, handler: Handler, sock: socket.socket, settings: ServerSettings) -> Server:
        """A server (not started) for ``handler`` on ``sock``, a socket from :meth:`bind`."""

    @abc.abstractmethod
    def channel(
        self,
        endpoint: str,
        interface: ServiceInterface | None = None,
        settings: ChannelSettings | None = None,
    ) -> Channel:
        """A channel to one endpoint of this transport; ``interface`` is the callee's, for
        transports whose messages are typed by it (gRPC, Thrift); ``settings`` (None: the
        defaults) bound its connections and say how to connect."""

    @abc.abstractmethod
    async def probe(
        self, endpoint: str, *, timeout: float = 2.0, settings: ChannelSettings | None = None
    ) -> None:
        """Return if ``endpoint`` is ready to serve; raise ``ConnectionError`` saying why not."""
