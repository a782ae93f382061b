"""The local control plane behind ``lumi run``: start an app's replicas and keep them running.

* Every replica gets its sockets — one per RPC transport it serves — bound up front by the
  supervisor and kept, so all endpoints are known before anything starts and a restarted
  replica serves on the same ports.
* Each service runs on its configured runtime (:mod:`lumi.runtimes.base`; local processes by
  default). Every replica starts at once (each waits for its capabilities before it serves);
  a service counts as started once its replicas are ready and the services it requires have
  started. One that cannot start stops the run with one line naming it and why.
* A replica that dies is restarted with exponential backoff; the restart is logged with its
  exit status.
* SIGINT/SIGTERM: services stop in reverse dependency order; each replica drains in-flight
  calls (bounded by the grace period) and is killed only if it overruns.
* With mTLS on (``security.mtls``, the default) it is the app's certificate authority: every
  replica and the operator get a short-lived certificate, renewed in place at half its
  lifetime (:mod:`lumi.security.issuer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping

from lumi import transports
from lumi.backends import RUNTIMES
from lumi.config import AppConfig
from lumi.model.errors import AppError, ConfigError, DefinitionError
from lumi.model.graph import start_order
from lumi.model.interface import ServiceInterface, interface
from lumi.paths import AppPaths
from lumi.runtimes.base import Replica, ReplicaSpec, Runtime, StartError
from lumi.runtimes.discovery import (
    Registry,
    ReplicaState,
    ServiceState,
    remove_registry,
    write_interfaces,
    write_listing,
    write_registry,
)
from lumi.security import setup as security
from lumi.security.issuer import Issuer
from lumi.security.policy import check as check_access

Emit = Callable[[str, str], None]
"""Where output goes: ``emit(source, line)``; source is ``"Service[i]"`` or ``"lumi"``."""


class _Slot:
    """One replica position (service, index): its sockets, endpoints and current replica."""

    def __init__(
        self,
        sup: Supervisor,
        service: str,
        index: int,
        sockets: dict[str, socket.socket],
        node: str | None = None,
    ) -> None:
        self.sup = sup
        self.service = service
        self.index = index
        self.sockets = sockets
        self.node = node
        self.per_node = sup.config.service(service).placement == "per-node"
        self.endpoints = [transports.get(t).endpoint_of(s) for t, s in sockets.items()]
        self.addresses = {t: s.getsockname()[:2] for t, s in sockets.items()}
        self.runtime: Runtime = sup.runtime_of(service)
        issuer = sup.issuer
        self.tls_dir = str(issuer.issue_replica(service, index)) if issuer and sockets else None
        self.replica: Replica | None = None
        self.state = ReplicaState(
            index=index, endpoints=self.endpoints, runtime=self.runtime.name, node=node
        )
        self.ready_at = 0.0
        self.monitor: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return f"{self.service}[{self.index}]"

    async def start(self) -> None:
        """Start a replica and wait until it is ready; StartError otherwise."""
        await self.adopt(await self.launch())

    async def launch(self) -> Replica:
        """Start a replica (not yet waiting for it to be ready); StartError otherwise."""
        spec = self.sup.replica_spec(self.service, self.index, node=self.node, tls_dir=self.tls_dir)
        self.state.state = "starting"
        try:
            replica = await self.runtime.start(
                spec, self.sockets, lambda line: self.sup.emit(self.name, line)
            )
        except (StartError, AppError, ConfigError, DefinitionError, OSError) as exc:
            raise StartError(f"{self.service} could not start: {exc}") from None
        self.state.pid = replica.pid
        return replica

    async def adopt(self, replica: Replica) -> None:
        """Wait until a launched ``replica`` is ready and make it this slot's; StartError (and
        the replica killed) otherwise."""
        try:
            await replica.ready(self.sup.config.defaults.start_timeout)
        except StartError as exc:
            raise StartError(f"{self.service} could not start: {exc}") from None
        except (AppError, ConfigError, DefinitionError, OSError) as exc:
            await replica.kill()
            raise StartError(f"{self.service} could not start: {exc}") from None
        self.replica = replica
        self.state.state = "ready"
        self.ready_at = time.monotonic()

    async def watch(self) -> None:
        """Restart the replica whenever it ends, with exponential backoff."""
        sup = self.sup
        delay = sup.restart_backoff
        while self.replica is not None:
            code = await self.replica.wait()
            if sup.stopping:
                return
            if time.monotonic() - self.ready_at > sup.stable_after:
                delay = sup.restart_backoff
            self.state.restarts += 1
            self.state.state = "restarting"
            if self.per_node:
                self.release()  # callers on this node fail over until it is back
            sup.save()
            sup.emit(
                "lumi",
                f"{self.name} exited with code {_describe(code)}; restarting in {delay:g}s "
                f"(restart {self.state.restarts})",
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, sup.max_backoff)
            if sup.is_stopping():
                return
            try:
                if self.per_node:
                    self.rebind()
                await self.start()
                sup.emit("lumi", f"{self.name} is back (pid {self.state.pid})")
            except StartError as exc:
                sup.emit("lumi", f"{self.name}: restart failed: {exc}")
            sup.save()

    async def stop(self, grace: float) -> None:
        if self.monitor is not None:
            self.monitor.cancel()
        if self.replica is not None:
            self.state.state = "stopping"
            await self.replica.stop(grace)
        self.state.state = "stopped"
        self.close()

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close()

    def release(self) -> None:
        """Close the sockets while the replica is down, so connections are refused (and a
        caller's balancer moves on) instead of waiting in the backlog."""
        self.close()

    def rebind(self) -> None:
        """Bind the released sockets again, on the same ports."""
        for name, (host, port) in self.addresses.items():
            if self.sockets[name].fileno() == -1:
                try:
                    self.sockets[name] = transports.get(name).bind(host, port)
                except OSError as exc:
                    raise StartError(f"cannot listen on {host}:{port} again: {exc}") from None


class _Dropped(Exception):
    """A service's start was abandoned because the run is stopping."""


def _describe(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"{code} ({signal.Signals(-code).name})"
    return str(code)


class Supervisor:
    """Runs an app's services until told to stop; ``runtime`` overrides every service's."""

    def __init__(
        self,
        config: AppConfig,
        *,
        emit: Emit,
        runtime: str | None = None,
        nodes: int | None = None,
        restart_backoff: float = 0.5,
        max_backoff: float = 30.0,
        stable_after: float = 10.0,
        interfaces: Mapping[str, ServiceInterface] | None = None,
    ) -> None:
        self.config = config
        self.emit = emit
        self.runtime_override = runtime
        self.nodes = [f"node-{n}" for n in range(nodes)] if nodes else []
        self.placement: dict[str, str] = {}  # endpoint → node, with --nodes
        self.restart_backoff = restart_backoff
        self.max_backoff = max_backoff
        self.stable_after = stable_after
        self.stopping = False
        # Given (lumi deploy: from artifacts' manifests), the app's code is never imported here.
        self.interfaces: dict[str, ServiceInterface] = (
            dict(interfaces)
            if interfaces is not None
            else {cls.name: interface(cls) for cls in config.load_services()}
        )
        # lumi ls reads a running app's listing only if it lists what the config does: the
        # interfaces given (lumi deploy) or added to the app are not the config's.
        self._listing = interfaces is None
        self.interpreters: dict[str, str] = {}  # service → the Python its replicas run with
        self.order = start_order(self.interfaces.values())
        check_access(config, self.interfaces)
        security.check_transports(
            config,
            ((n, transports.get(n)) for name in self.order for n in config.binding(name).rpc or []),
        )
        self.issuer = Issuer(config) if config.security.mtls else None
        self._renewals: asyncio.Task[None] | None = None
        self.slots: dict[str, list[_Slot]] = {}
        self.endpoints: dict[str, list[str]] = {}
        self._runtimes: dict[str, Runtime] = {}
        self._stop = asyncio.Event()
        self.running = asyncio.Event()  # set once every service is up

    def runtime_name(self, service: str) -> str:
        """The name of the runtime ``service``'s replicas run on."""
        return self.runtime_override or self.config.binding(service).runtime or "process"

    def runtime_of(self, service: str) -> Runtime:
        name = self.runtime_name(service)
        found = self._runtimes.get(name)
        if found is None:
            found = self._runtimes[name] = RUNTIMES.load(name)()
        return found

    def replica_spec(
        self, service: str, index: int, *, node: str | None = None, tls_dir: str | None = None
    ) -> ReplicaSpec:
        """What replica ``index`` of ``service`` is started with (on ``node``, with the
        certificate bundle in ``tls_dir``)."""
        config = self.config
        return ReplicaSpec(
            app_dir=str(config.root),
            env=config.environment,
            service=service,
            replica=index,
            endpoints=self.endpoints,
            environment=config.service(service).environment,
            node=node,
            placement=self.placement,
            tls_dir=tls_dir,
            python=self.interpreters.get(service),
        )

    def is_stopping(self) -> bool:
        return self.stopping

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> int:
        """Start everything, serve until SIGINT/SIGTERM, stop everything; the exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)
        # What makes the replicas' starts fast (the process runtime's template) gets ready
        # while the rest is prepared.
        starting = Counter(slot.runtime for slots in self.slots.values() for slot in slots)
        for runtime, count in starting.items():
            runtime.prestart(count)
        if self.issuer is not None:
            self.issuer.issue_operator()
            self._renewals = asyncio.create_task(self.issuer.run())
        try:
            self._bind_all()
            self.publish(self.interfaces)
            self.save()
            await self._start_services()
        except StartError as exc:
            self.emit("lumi", f"error: {exc}")
            await self.shutdown()
            return 1
        for slots in self.slots.values():
            for slot in slots:
                slot.monitor = asyncio.create_task(slot.watch())
        self._banner()
        self.running.set()
        await self._stop.wait()
        self.emit("lumi", "stopping (services in reverse dependency order)")
        await self.shutdown()
        self.emit("lumi", "stopped")
        return 0

    async def _start_services(self) -> None:
        """Start every replica at once, and take each service's replicas as ready once the
        services it requires are (a replica waits for its capabilities itself, so it does its
        start-up — imports, config, the app's classes — while they do theirs). The first
        StartError, in start order, once every start under way has ended; a service whose
        requirement failed has its replicas killed (none is left behind, and none is reported
        ready before what it requires)."""
        tasks: dict[str, asyncio.Task[None]] = {}

        async def start(name: str) -> None:
            slots = self.slots[name]
            launched = await asyncio.gather(*(s.launch() for s in slots), return_exceptions=True)
            try:
                for result in launched:
                    if isinstance(result, BaseException):
                        raise result
                for required in self.interfaces[name].requires:
                    if required in tasks:  # one that failed raises here: this one is dropped
                        await asyncio.shield(tasks[required])
                if self._stop.is_set():
                    raise _Dropped
                replicas = [r for r in launched if isinstance(r, Replica)]
                await asyncio.gather(*(s.adopt(r) for s, r in zip(slots, replicas, strict=True)))
            except BaseException:
                # the replicas no slot took (adopt kills the ones it refuses)
                taken = {id(s.replica) for s in slots}
                await asyncio.gather(
                    *(r.kill() for r in launched if isinstance(r, Replica) and id(r) not in taken),
                    return_exceptions=True,
                )
                raise
            self.save()

        for name in self.order:  # a service's requirements come first: their tasks exist
            tasks[name] = asyncio.create_task(start(name))
        results = await asyncio.gather(*tasks.values(), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, _Dropped):
                raise result

    async def keep_warm(self, count: int) -> None:
        """Ask every runtime in use to keep ``count`` fast starts ready (hot reload), and wait
        until they are."""
        for slots in self.slots.values():
            for slot in slots:
                slot.runtime.keep_warm(count)
        await asyncio.gather(*(runtime.warm() for runtime in self._runtimes.values()))

    async def restart_service(self, name: str) -> None:
        """Replace every replica of ``name`` with a fresh one (hot reload).

        The new replicas start on the same sockets and must all be ready before the old ones
        drain, so the service never stops answering. If one cannot start, the new ones are
        stopped, StartError is raised and the old replicas keep serving.
        """
        slots = self.slots[name]
        for slot in slots:
            if slot.monitor is not None:
                slot.monitor.cancel()  # the old replica's exit is now expected
            slot.state.state = "restarting"
        self.save()
        old = [slot.replica for slot in slots]
        results = await asyncio.gather(*(slot.start() for slot in slots), return_exceptions=True)
        grace = self.config.defaults.grace_period
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed or self.is_stopping():
            fresh = [slot.replica for slot in slots]
            await asyncio.gather(
                *(r.stop(grace) for r, o in zip(fresh, old, strict=True) if r is not o and r)
            )
            for slot, previous in zip(slots, old, strict=True):
                slot.replica = previous
                slot.state.pid = previous.pid if previous else None
                slot.state.state = "ready"
                slot.monitor = asyncio.create_task(slot.watch())
            self.save()
            if failed:
                error = failed[0]
                raise error if isinstance(error, StartError) else StartError(str(error))
            return
        for slot in slots:
            slot.state.restarts += 1
            slot.monitor = asyncio.create_task(slot.watch())
        self.save()
        await asyncio.gather(*(r.stop(grace) for r in old if r is not None))

    async def add_service(self, name: str, iface: ServiceInterface) -> None:
        """Start a service that joins the running app (lumi deploy): bind its replicas'
        sockets and wait until they are all ready. If one cannot start, the service is taken
        out again and StartError raised; nothing else is touched."""
        self.interfaces[name] = iface
        self.order = start_order(self.interfaces.values())
        self._listing = False
        AppPaths(self.config.root).listing.unlink(missing_ok=True)
        try:
            self._bind_all([name])
            write_interfaces(self.config.root, {name: iface})
            await asyncio.gather(*(slot.start() for slot in self.slots[name]))
        except BaseException:
            grace = self.config.defaults.grace_period
            slots = self.slots.pop(name, [])
            await asyncio.gather(*(s.stop(grace) for s in slots), return_exceptions=True)
            self.endpoints.pop(name, None)
            del self.interfaces[name]
            self.order.remove(name)
            self.save()
            raise
        for slot in self.slots[name]:
            slot.monitor = asyncio.create_task(slot.watch())
        self.save()

    def replica_count(self, service: str) -> int:
        """How many replicas ``service`` runs: one per node for a per-node service."""
        config = self.config.service(service)
        return max(1, len(self.nodes)) if config.placement == "per-node" else config.replicas

    def replica_names(self) -> list[str]:
        """Every replica's name (``Catalog[1]``), in start order."""
        return [f"{name}[{i}]" for name in self.order for i in range(self.replica_count(name))]

    def _bind_all(self, names: Iterable[str] | None = None) -> None:
        host = self.config.defaults.host
        chosen = list(self.order if names is None else names)
        try:
            for name in chosen:
                service = self.config.service(name)
                names = self.config.binding(name).rpc or ["http"]
                slots = self.slots[name] = []
                for index in range(self.replica_count(name)):
                    # One replica on every node; other services spread over the nodes.
                    node = self.nodes[index % len(self.nodes)] if self.nodes else None
                    sockets: dict[str, socket.socket] = {}
                    slots.append(_Slot(self, name, index, sockets, node))
                    for position, transport in enumerate(names):
                        port = 0
                        if service.port is not None and position == 0:
                            port = service.port + index
                        try:
                            sockets[transport] = transports.get(transport).bind(host, port)
                        except OSError as exc:
                            raise StartError(
                                f"{name} could not start: cannot listen on {host}:{port}: "
                                f"{exc.strerror or exc}"
                            ) from None
                    slots[-1] = _Slot(self, name, index, sockets, node)
                    if node is not None:
                        self.placement.update(dict.fromkeys(slots[-1].endpoints, node))
                # Grouped by transport in the service's order, so the first is its default.
                self.endpoints[name] = [
                    url
                    for transport in names
                    for slot in slots
                    for url in slot.endpoints
                    if url.startswith(f"{transport}://")
                ]
        except StartError:
            self._close_sockets(chosen)
            raise

    def _close_sockets(self, names: Iterable[str] | None = None) -> None:
        for name in self.slots if names is None else names:
            for slot in self.slots.get(name, []):
                slot.close()

    async def shutdown(self) -> None:
        self.stopping = True
        if self._renewals is not None:
            self._renewals.cancel()
        grace = self.config.defaults.grace_period
        for name in reversed(self.order):
            slots = self.slots.get(name, [])
            if any(slot.replica is not None for slot in slots):
                await asyncio.gather(*(slot.stop(grace) for slot in slots))
                self.emit("lumi", f"stopped {name}")
        self._close_sockets()
        for runtime in self._runtimes.values():
            await runtime.aclose()
        remove_registry(self.config.root, os.getpid())

    def publish(self, changed: Mapping[str, ServiceInterface]) -> None:
        """Write the ``changed`` interfaces (what lumi call and lumi ls read) and, while it
        is the config's, the app's listing."""
        write_interfaces(self.config.root, changed)
        if self._listing:
            write_listing(self.config, self.interfaces)

    def save(self) -> None:
        registry = Registry(
            app=self.config.name,
            env=self.config.environment,
            supervisor_pid=os.getpid(),
            mode=self.runtime_override or "process",
            mtls=self.issuer is not None,
            services={
                name: ServiceState(
                    endpoints=self.endpoints[name],
                    fingerprint=self.interfaces[name].fingerprint,
                    replicas=[slot.state for slot in self.slots[name]],
                )
                for name in self.order
                if name in self.slots
            },
        )
        write_registry(self.config.root, registry)

    def _banner(self) -> None:
        self.emit("lumi", f"app {self.config.name!r} is running; Ctrl-C stops it")
        for name in self.order:
            self.emit("lumi", f"  {name:<16} {' '.join(self.endpoints[name])}")
        if self.issuer is not None:
            operator = self.issuer.folder("operator")
            self.emit("lumi", f"mTLS on; the operator's certificate (for curl --cert): {operator}")
