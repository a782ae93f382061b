"""One replica of one service, hosted in this process — what every runtime finally runs.

A :class:`ReplicaRunner` hosts the service (:class:`~lumi.runtimes.host.Host`), connects a
client to each capability over the transport the caller's configuration picks (by default the
first the capability serves), waits until those capabilities are ready, then serves its own
transports on the sockets it was given, until told to stop; then it drains: stops accepting,
lets in-flight calls finish (bounded by the grace period), runs ``shutdown`` hooks and closes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
from collections.abc import Callable, Mapping
from typing import Any

from lumi import transports
from lumi.brokers import create_broker
from lumi.brokers.base import Broker
from lumi.config import AppConfig
from lumi.model.errors import AppError
from lumi.model.interface import ServiceInterface, interface
from lumi.paths import AppPaths
from lumi.pipeline.call import Handler, compose
from lumi.retrying import wait_ready
from lumi.runtime_services.resilience.balancer import Balancer, EndpointChannel
from lumi.runtimes import stack
from lumi.runtimes.base import ReplicaSpec
from lumi.runtimes.host import Host
from lumi.runtimes.routes import RouteFollower, Routes
from lumi.security import setup as security
from lumi.transports import idl
from lumi.transports.base import (
    ChannelSettings,
    Health,
    Server,
    ServerSettings,
    Transport,
    transport_of,
)

log = logging.getLogger("lumi.replica")


class ReplicaRunner:
    """Hosts ``spec.service`` and serves it on ``sockets`` (transport name → socket); with
    ``broker``, publishes and subscribes through that (started) broker instead of its own."""

    def __init__(
        self,
        spec: ReplicaSpec,
        config: AppConfig,
        sockets: Mapping[str, socket.socket],
        services: stack.RuntimeServices,
        broker: Broker | None = None,
    ) -> None:
        self.spec = spec
        self.config = config
        # gRPC and Thrift serve and call what `lumi gen` wrote: the app's package and lock
        idl.configure(idl.for_app(config.root, config.name))
        self.sockets = dict(sockets)
        self.services = services
        classes = {cls.name: cls for cls in config.load_services()}
        if spec.service not in classes:
            raise AppError(f"no service {spec.service!r} in {config.path}")
        self.cls = classes[spec.service]
        self.interfaces: dict[str, ServiceInterface] = {
            name: interface(cls) for name, cls in classes.items()
        }
        self.interface = self.interfaces[spec.service]
        # mTLS: this replica's certificate, renewed in place (see lumi.security)
        self.tls = security.replica_tls(config, spec.name, spec.tls_dir)
        binding = config.binding(spec.service)
        # A runtime hosting several replicas in one process may share one broker connection.
        self._owns_broker = broker is None
        self.broker = broker or create_broker(binding.events or "embedded", app_dir=config.root)
        self.balancers = {
            name: self._balancer(name) for name in self.interface.requires if name in spec.endpoints
        }
        self.client_stack = stack.client_middlewares(spec.service, services)
        guard = security.guard(config, self.interfaces, [spec.service], self._hosted)
        self.host = Host(
            [self.cls],
            broker=self.broker,
            channel_for=self._channel_for,
            app=config.name,
            middlewares=stack.server_middlewares(spec.service, services, guard=guard),
            guards=stack.server_guards(spec.service, services),
            settings=lambda name: stack.dispatch_settings(config, name),
            external=self.interface.requires,
            publish_middlewares=lambda name: stack.publish_middlewares(name, services),
        )
        self.health = Health(self._ready)
        self.servers: list[Server] = []
        security.check_transports(config, ((n, transports.get(n)) for n in self.sockets))
        # A deployed environment's route table (lumi deploy: canary weights), when there is one.
        table = AppPaths(config.root).routes
        self.routes = RouteFollower(table, self._reroute) if table.exists() else None
        self._closing: set[asyncio.Task[None]] = set()
        self._dropped: list[EndpointChannel] = []

    def _hosted(self, name: str) -> tuple[object, Any] | None:
        """The running instance of ``name`` and its ``@lumi.auth`` handler, if it has one."""
        instance = self.host.instances.get(name)
        auth = self.host.reflected[name].auth if name in self.host.reflected else None
        return None if instance is None or auth is None else (instance, auth)

    def transport_for(self, capability: str) -> str:
        """The transport calls to ``capability`` use: the caller's choice, else the first the
        capability serves."""
        urls = self.spec.endpoints.get(capability) or []
        offered = list(dict.fromkeys(transport_of(url) for url in urls))
        chosen = self.config.service(self.spec.service).capabilities.get(capability)
        wanted = chosen.transport if chosen is not None else None
        if wanted is None:
            if not offered:
                raise AppError(f"{self.spec.service} requires {capability}, which has no endpoint")
            return offered[0]
        if wanted not in offered:
            raise AppError(
                f"services.{self.spec.service}.capabilities.{capability}.transport is {wanted!r}, "
                f"but {capability} serves {', '.join(offered) or 'nothing'}"
            )
        return wanted

    def pool_size(self, capability: str) -> int:
        """Connections kept to each endpoint of ``capability``: the caller's setting for it,
        else ``defaults.pool_size``."""
        chosen = self.config.service(self.spec.service).capabilities.get(capability)
        if chosen is not None and chosen.pool_size is not None:
            return chosen.pool_size
        return self.config.defaults.pool_size

    def channel_settings(self, name: str) -> ChannelSettings:
        """How this replica connects to ``name``: its pool size, and its certificate (mTLS)."""
        secured = security.channel_settings(self.config, self.tls, name)
        pool_size = self.pool_size(name)
        if secured is None:
            return ChannelSettings(pool_size=pool_size)
        return dataclasses.replace(secured, pool_size=pool_size)

    def _balancer(self, name: str) -> Balancer:
        chosen = self.transport_for(name)
        transport = transports.get(chosen)
        iface = self.interfaces.get(name)
        settings = self.channel_settings(name)
        channels = [
            transport.channel(url, iface, settings)
            for url in self.spec.endpoints[name]
            if transport_of(url) == chosen
        ]
        breakers = self.services.breakers(self.spec.service)
        local: list[str] = []
        if self.spec.node and self.config.service(name).placement == "per-node":
            # A per-node capability: the replica on this node, others only while it is down.
            local = [url for url, node in self.spec.placement.items() if node == self.spec.node]
        return Balancer(name, channels, breakers=breakers, local=local)

    def _reroute(self, routes: Routes) -> None:
        """Point each capability's balancer at the weights of the route table (the endpoints
        this replica was started with, evenly, for a capability the table does not list)."""
        for name, balancer in self.balancers.items():
            chosen = self.transport_for(name)
            listed = routes.services.get(name)
            if listed is None:
                listed = dict.fromkeys(self.spec.endpoints.get(name, []), 1.0)
            weights = {url: w for url, w in listed.items() if transport_of(url) == chosen}
            if not any(weight > 0 for weight in weights.values()):
                log.warning("route table %d: no %s endpoint of %s", routes.version, chosen, name)
                continue
            dropped = balancer.reroute(weights, self._connector(chosen, name))
            if dropped:
                self._dropped += dropped
                task = asyncio.create_task(self._close_later(dropped))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
        log.info("following route table %d", routes.version)

    def _connector(self, transport_name: str, name: str) -> Callable[[str], EndpointChannel]:
        transport, iface = transports.get(transport_name), self.interfaces.get(name)
        settings = self.channel_settings(name)
        return lambda url: transport.channel(url, iface, settings)

    async def _close_later(self, channels: list[EndpointChannel]) -> None:
        """Close channels a reroute dropped, once the calls in flight on them are done."""
        await asyncio.sleep(self.config.defaults.grace_period + 1)
        for channel in channels:
            self._dropped.remove(channel)
            await channel.aclose()

    def _channel_for(self, name: str) -> Handler:
        balancer = self.balancers.get(name)
        if balancer is None:
            raise AppError(f"{self.spec.service} requires {name}, which has no endpoint")
        return compose(balancer, self.client_stack)

    async def _wait_for_capabilities(self) -> None:
        """Wait (with backoff, one log line per attempt) until every capability is ready."""
        for name, balancer in self.balancers.items():
            transport = transports.get(self.transport_for(name))
            settings = security.channel_settings(self.config, self.tls, name)

            async def any_ready(
                endpoints: list[str] = balancer.endpoints,
                transport: Transport = transport,
                settings: Any = settings,
            ) -> bool:
                errors = []
                for endpoint in endpoints:
                    try:
                        await transport.probe(endpoint, settings=settings)
                        return True
                    except ConnectionError as exc:
                        errors.append(str(exc))
                raise ConnectionError("; ".join(errors))

            await wait_ready(any_ready, name, timeout=self.services.ready_timeout, logger=log)

    async def _ready(self) -> tuple[bool, dict[str, Any]]:
        health = self.host.health()
        return bool(health["ok"]), health["services"]

    async def run(self, stop: asyncio.Event, ready: Callable[[], None]) -> None:
        """Start, report ``ready()``, serve until ``stop`` is set, then drain and close."""
        if self._owns_broker:
            await self.broker.start()
        renewals = asyncio.create_task(self.tls.watch()) if self.tls is not None else None
        if self.routes is not None:
            self.routes.start()
        try:
            await self._wait_for_capabilities()
            await self.host.start()
            try:
                await self._serve(ready, stop)
            finally:
                await self.host.stop()
        finally:
            if renewals is not None:
                renewals.cancel()
            if self.routes is not None:
                await self.routes.aclose()
            for task in list(self._closing):
                task.cancel()
            for channel in self._dropped:
                await channel.aclose()
            for balancer in self.balancers.values():
                await balancer.aclose()
            if self._owns_broker:
                await self.broker.aclose()
            for sock in self.sockets.values():
                sock.close()  # those no server took (it failed before serving)

    async def _serve(self, ready: Callable[[], None], stop: asyncio.Event) -> None:
        settings = ServerSettings(
            interfaces={self.interface.name: self.interface},
            health=self.health,
            max_body=self.config.defaults.max_body,
            header_timeout=self.config.defaults.header_timeout,
            body_timeout=self.config.defaults.body_timeout,
            grace_period=self.config.defaults.grace_period,
            admin={"/metrics": self.services.metrics.route},
            tls=self.tls,
        )
        try:
            for name, sock in self.sockets.items():
                server = transports.get(name).server(self.host.dispatcher.handle, sock, settings)
                await server.start()
                self.servers.append(server)
            # logged before the supervisor hears of it, so the line comes before its banner
            log.info("%s serving on %s", self.spec.name, " ".join(s.endpoint for s in self.servers))
            ready()
            await stop.wait()
            log.info("%s draining", self.spec.name)
        finally:
            self.health.draining = True
            await asyncio.gather(*(server.aclose() for server in self.servers))
