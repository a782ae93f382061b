"""Transports by name, for the runtimes: reserve a replica's port, serve, call, probe.

This is the seam the local process runtime uses to serve one service on several transports at
once (``rpc = ["http", "grpc", "thrift"]``) and to call a capability over the transport its
config picks. Endpoints are scheme-qualified URLs (``http://``, ``grpc://``, ``thrift://``), one
per transport per replica. (Provisional: when the ``Transport`` contract of issue 9 lands, each
function here is that transport's method.)
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lumi.model.errors import ConfigError
from lumi.model.interface import ServiceInterface
from lumi.pipeline import Call, Handler
from lumi.pipeline.outcome import NotSent
from lumi.transports.base import Channel, Server

TRANSPORTS = ("http", "grpc", "thrift")
ReadyCheck = Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]
_LOCK = "lumi.lock.json"


def scheme(endpoint: str) -> str:
    """``grpc://127.0.0.1:9000`` → ``grpc`` (a bare address is HTTP)."""
    return endpoint.split("://", 1)[0] if "://" in endpoint else "http"


@dataclasses.dataclass(frozen=True)
class WireOptions:
    """What every server and channel of an app shares."""

    package: str = "lumi"  # proto package / Thrift namespace prefix (``lumi gen --package``)
    locks: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    max_body: int = 4 * 1024 * 1024
    grace_period: float = 10.0


def options_for(app_dir: Path, package: str, max_body: int, grace: float) -> WireOptions:
    """Options for an app: the lock sections ``lumi gen`` wrote (so served field numbers are
    those of the generated files), looked for under ``gen/proto``, ``gen/thrift``, ``gen`` and
    the app folder."""
    locks: dict[str, Mapping[str, Any]] = {}
    for section in ("proto", "thrift"):
        for folder in (app_dir / "gen" / section, app_dir / "gen", app_dir):
            file = folder / _LOCK
            if file.is_file():
                try:
                    data = json.loads(file.read_text())
                except ValueError as exc:
                    raise ConfigError(f"{file}: not JSON: {exc}") from None
                if section in data:
                    locks[section] = data[section]
                    break
    return WireOptions(package, locks, max_body, grace)


def bind(transport: str, host: str, port: int) -> socket.socket:
    """Reserve ``host:port`` for a replica's ``transport`` server (port 0: a free one).

    HTTP and Thrift get a listening socket the replica adopts, so connections wait in the
    backlog across a restart. gRPC cannot adopt a socket: the port is held with SO_REUSEPORT,
    unlistened, and the replica's gRPC server binds it too.
    """
    if transport == "grpc":
        from lumi.transports.grpc import reserve_port

        return reserve_port(host, port)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(1024)
    return sock


def endpoint(transport: str, sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"{transport}://{host}:{port}"


def server(
    transport: str,
    handler: Handler,
    *,
    sock: socket.socket,
    interfaces: Mapping[str, ServiceInterface],
    options: WireOptions,
    ready: ReadyCheck | None = None,
    routes: Mapping[str, Any] | None = None,
) -> Server:
    """A (not yet started) server of ``transport`` on the socket :func:`bind` reserved."""
    if transport == "http":
        from lumi.transports.http import HttpServer

        return HttpServer(
            handler, interfaces=interfaces, sock=sock, max_body=options.max_body,
            grace_period=options.grace_period, routes=routes, ready=ready,
        )  # fmt: skip
    if transport == "grpc":
        from lumi.transports.grpc import GrpcServer

        host, port = sock.getsockname()[:2]
        return GrpcServer(
            handler, interfaces=interfaces, package=options.package,
            lock=options.locks.get("proto"), host=host, port=port,
            max_message=options.max_body, ready=ready, grace_period=options.grace_period,
        )  # fmt: skip
    if transport == "thrift":
        from lumi.transports.thrift import ThriftServer

        return ThriftServer(
            handler, interfaces=interfaces, package=options.package,
            lock=options.locks.get("thrift"), sock=sock, max_message=options.max_body,
            grace_period=options.grace_period, ready=ready,
        )  # fmt: skip
    raise ConfigError(f"unknown RPC transport {transport!r} (valid: {', '.join(TRANSPORTS)})")


def channel(
    endpoints: Sequence[str],
    *,
    interface: ServiceInterface,
    options: WireOptions,
    breakers: Any = None,
) -> Channel:
    """A channel to a service's replicas (endpoints of one transport), balanced round-robin."""
    if not endpoints:
        raise ValueError(f"no endpoint to call {interface.name} at")
    kinds = {scheme(e) for e in endpoints}
    if len(kinds) != 1:
        raise ValueError(f"endpoints of one transport only, not {sorted(kinds)}")
    kind = kinds.pop()
    if kind == "http":
        from lumi.transports.http import HttpChannel

        return HttpChannel(list(endpoints), breakers=breakers)
    one: list[Channel] = []
    for url in endpoints:
        if kind == "grpc":
            from lumi.transports.grpc import GrpcChannel

            one.append(
                GrpcChannel(
                    url,
                    interface=interface,
                    package=options.package,
                    lock=options.locks.get("proto"),
                )
            )
        elif kind == "thrift":
            from lumi.transports.thrift import ThriftChannel

            one.append(
                ThriftChannel(
                    url,
                    interface=interface,
                    package=options.package,
                    lock=options.locks.get("thrift"),
                )
            )
        else:
            raise ValueError(f"unknown transport in {url!r} (valid: {', '.join(TRANSPORTS)})")
    return one[0] if len(one) == 1 else Balanced(one)


class Balanced(Channel):
    """Round-robin over one-endpoint channels; a replica that could not be reached (nothing was
    sent) is skipped for the next one."""

    def __init__(self, channels: Sequence[Channel]) -> None:
        self.channels = list(channels)
        self._next = itertools.cycle(range(len(self.channels)))

    async def call(self, call: Call) -> bytes:
        start = next(self._next)
        failures: list[str] = []
        for offset in range(len(self.channels)):
            target = self.channels[(start + offset) % len(self.channels)]
            try:
                return await target.call(call)
            except NotSent as exc:  # nothing was sent: the next replica may take it
                failures.append(exc.message)
        raise NotSent(f"cannot reach {call.service}: {'; '.join(failures)}")

    async def aclose(self) -> None:
        for target in self.channels:
            await target.aclose()


async def probe(endpoint: str, *, timeout: float = 2.0) -> None:
    """Raise ConnectionError unless ``endpoint`` reports ready, in its transport's idiom."""
    kind = scheme(endpoint)
    if kind == "grpc":
        from lumi.transports import grpc

        await grpc.probe(endpoint, timeout=timeout)
    elif kind == "thrift":
        from lumi.transports import thrift

        await thrift.probe(endpoint, timeout=timeout)
    else:
        import aiohttp

        client_timeout = aiohttp.ClientTimeout(total=timeout)
        try:
            async with (
                aiohttp.ClientSession(timeout=client_timeout) as session,
                session.get(f"{endpoint.rstrip('/')}/readyz") as resp,
            ):
                if resp.status != 200:
                    raise ConnectionError(f"{endpoint} answered {resp.status}")
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ConnectionError(f"{endpoint}: {type(exc).__name__}: {exc}") from None


async def any_ready(endpoints: Sequence[str]) -> bool:
    """True when one of ``endpoints`` is ready; ConnectionError naming each failure otherwise."""
    errors = []
    for url in endpoints:
        try:
            await probe(url)
            return True
        except ConnectionError as exc:
            errors.append(str(exc))
    raise ConnectionError("; ".join(errors) or "no endpoints")


def pick(
    callee: str, endpoints: Sequence[str], wanted: str | None, where: str = "config"
) -> list[str]:
    """The endpoints of ``callee`` to call: those of ``wanted``, or of the callee's first
    transport (the first endpoint's scheme)."""
    if not endpoints:
        return []
    kind = wanted or scheme(endpoints[0])
    chosen = [e for e in endpoints if scheme(e) == kind]
    if not chosen:
        offered = sorted({scheme(e) for e in endpoints})
        raise ConfigError(
            f"{where}: {callee} is not served over {kind!r} (it serves: {', '.join(offered)})"
        )
    return chosen


__all__ = [
    "TRANSPORTS",
    "Balanced",
    "WireOptions",
    "any_ready",
    "bind",
    "channel",
    "endpoint",
    "options_for",
    "pick",
    "probe",
    "scheme",
    "server",
]
