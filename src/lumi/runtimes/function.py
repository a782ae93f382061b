"""The function runtime: ``runtime = "function"`` scales a service to zero and back.

A function replica is an *activator* running in ``lumi run``'s process: it holds the service's
endpoints (it serves every transport on the sockets the supervisor bound, answering readiness
itself, so dependants start at once), and starts instances only when calls need them
(:class:`~lumi.runtimes.activator.InstancePool`): the first call starts one and is forwarded
once it is ready; more start, up to ``max_instances``, while every instance has
``concurrency`` calls in flight; an instance idle for ``idle_timeout`` stops.

Events wake it too: the activator follows each topic the service subscribes to as a reader
(it takes nothing from the service's consumer group), and an event published while no
instance runs starts one, which then consumes from the group as any replica would. Since the
activator cannot see events that were waiting before it began following, a subscriber starts
one instance when the activator starts, to catch up, and lets it idle away.

Tune it in ``[services.X.function]``: ``idle_timeout``, ``concurrency``, ``max_instances``,
``min_instances``, ``queue_timeout``. ``GET /instances`` on the service's HTTP endpoint shows
the pool.

With mTLS on, the activator serves TLS with the replica's certificate (renewed in place, like
any replica's) and runs the access guard before an instance is woken: a caller without a
certificate, or one the policy does not admit, is refused without starting anything. It
forwards to instances over mTLS with the same certificate, relaying the caller it verified
(``x-lumi-relayed-caller``), which an instance believes only from its own service's identity;
the end user's bearer token is verified by the instance, which hosts the ``@lumi.auth``
handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from lumi import transports
from lumi.brokers import create_broker
from lumi.brokers.base import Broker, Delivery, Subscription
from lumi.config import load_config
from lumi.model.errors import AppError, ConfigError, DefinitionError, NotFound
from lumi.model.interface import interface
from lumi.model.reflect import reflect
from lumi.pipeline.call import Call
from lumi.runtimes.activator import InstancePool
from lumi.runtimes.base import Output, Replica, ReplicaSpec, Runtime, StartError
from lumi.runtimes.zygote import ForkRuntime
from lumi.security import setup as security
from lumi.transports.base import Health, Server, ServerSettings


class FunctionReplica(Replica):
    """An activator: the service's endpoints, and instances started as calls need them."""

    def __init__(
        self,
        spec: ReplicaSpec,
        sockets: Mapping[str, socket.socket],
        output: Output,
        instances: Runtime,
    ) -> None:
        self.pid = os.getpid()
        self.spec = spec
        self.output = output
        self.instances = instances
        # The activator owns its copies; the supervisor keeps its own for restarts.
        self._sockets = {n: socket.socket(fileno=os.dup(s.fileno())) for n, s in sockets.items()}
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._grace = 10.0
        self.pool: InstancePool | None = None
        self._servers: list[Server] = []
        self._broker: Broker | None = None
        self._subscriptions: list[Subscription] = []
        self._warming: asyncio.Task[None] | None = None
        self._renewals: asyncio.Task[None] | None = None
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            await self._activate()
            self._ready.set()
            await self._stop.wait()
        finally:
            await self._deactivate()

    async def _activate(self) -> None:
        spec = self.spec
        config = load_config(Path(spec.app_dir), spec.env)
        classes = {cls.name: cls for cls in config.load_services()}
        if spec.service not in classes:
            raise AppError(
                f"no service {spec.service!r} in {config.path} "
                f"(services: {', '.join(sorted(classes))})"
            )
        reflected = reflect(classes[spec.service])
        iface = reflected.interface
        binding = config.binding(spec.service)
        self._grace = config.defaults.grace_period
        tls = security.replica_tls(config, spec.name, spec.tls_dir)
        security.check_transports(config, ((n, transports.get(n)) for n in self._sockets))
        interfaces = {name: interface(cls) for name, cls in classes.items()}
        guard = security.guard(config, interfaces, [spec.service], lambda name: None, relay=True)
        self.pool = pool = InstancePool(
            spec,
            config.service(spec.service).function,
            self.instances,
            transport=(binding.rpc or ["http"])[0],
            interface=iface,
            start_timeout=config.defaults.start_timeout,
            grace=self._grace,
            output=self.output,
            channel_settings=security.channel_settings(config, tls, spec.service),
        )

        async def forward(call: Call) -> bytes:
            # A call that could never succeed does not wake an instance.
            if call.service != iface.name or call.method not in iface.methods:
                raise NotFound(
                    f"{iface.name} has no method {call.service}.{call.method} "
                    f"(methods: {', '.join(iface.methods)})"
                )
            return await guard(call, pool.call)

        async def instances() -> tuple[int, str, bytes]:
            return 200, "application/json", json.dumps(pool.state()).encode()

        settings = ServerSettings(
            interfaces={iface.name: iface},
            health=Health(),
            max_body=config.defaults.max_body,
            grace_period=self._grace,
            admin={"/instances": instances},
            tls=tls,
        )
        if tls is not None:
            self._renewals = asyncio.create_task(tls.watch())
        for name, sock in list(self._sockets.items()):
            server = transports.get(name).server(forward, sock, settings)
            await server.start()
            del self._sockets[name]  # the server owns it now
            self._servers.append(server)
        if isinstance(self.instances, ForkRuntime):  # the template's imports, ahead of calls
            self._warming = asyncio.create_task(self.instances.prepare())
        topics = sorted({f"{s.options.service}.{s.options.event}" for s in reflected.subscriptions})
        if topics:
            self._broker = create_broker(binding.events or "embedded", app_dir=config.root)
            await self._broker.start()

            async def woken(delivery: Delivery) -> None:
                await pool.wake()

            for topic in topics:
                self._subscriptions.append(
                    await self._broker.subscribe(topic, None, woken, start="latest")
                )
            await pool.wake()  # catch up on events that waited for it before we followed
        await pool.warm()
        self.output(
            f"activator serving {' '.join(s.endpoint for s in self._servers)} "
            f"(0 instances; up to {pool.settings.max_instances})"
        )

    async def _deactivate(self) -> None:
        if self._renewals is not None:
            self._renewals.cancel()
        if self._warming is not None:
            with contextlib.suppress(Exception):
                await self._warming
        for subscription in self._subscriptions:
            with contextlib.suppress(Exception):
                await subscription.aclose()
        if self._broker is not None:
            await self._broker.aclose()
        # Stop taking calls and let those in flight finish, then stop the instances.
        await asyncio.gather(*(server.aclose() for server in self._servers))
        if self.pool is not None:
            await self.pool.aclose(grace=self._grace)
        for sock in self._sockets.values():
            sock.close()

    async def ready(self, timeout: float) -> None:
        waiter = asyncio.create_task(self._ready.wait())
        try:
            done, _ = await asyncio.wait(
                {waiter, self._task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
        if self._ready.is_set():
            return
        if self._task in done:
            error = None if self._task.cancelled() else self._task.exception()
            if isinstance(error, AppError | ConfigError | DefinitionError):
                raise StartError(str(error))
            raise StartError(f"{type(error).__name__}: {error}" if error else "it ended")
        await self.kill()
        raise StartError(f"not ready after {timeout:g}s (defaults.start_timeout)")

    async def wait(self) -> int:
        try:
            await asyncio.shield(self._task)
        except asyncio.CancelledError:
            if not self._task.cancelled():
                raise
            return -int(signal.SIGKILL)
        except Exception as exc:
            self.output(f"failed: {type(exc).__name__}: {exc}")
            return 1
        return 0

    async def stop(self, grace: float) -> None:
        self._grace = grace
        self._stop.set()
        try:
            async with asyncio.timeout(2 * grace + 10):  # the servers' drain, then instances'
                await asyncio.shield(self._task)
        except TimeoutError:
            await self.kill()
        except Exception:  # it failed while stopping: wait() reports it
            pass

    async def kill(self) -> None:
        if self.pool is not None:
            await self.pool.aclose(kill=True)
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task


class FunctionRuntime(Runtime):
    """Scale-to-zero replicas: an activator here, instances on ``instances`` (local processes
    forked from a template by default) started by calls and events, stopped when idle."""

    name: ClassVar[str] = "function"

    def __init__(self, instances: Runtime | None = None) -> None:
        # Instances fork from a template with Lumi imported: a cold start skips the
        # interpreter's start-up and imports (bench/function_bench.py).
        self.instances = instances or ForkRuntime()

    async def start(
        self, spec: ReplicaSpec, sockets: Mapping[str, socket.socket], output: Output
    ) -> Replica:
        return FunctionReplica(spec, sockets, output, self.instances)

    async def aclose(self) -> None:
        await self.instances.aclose()
