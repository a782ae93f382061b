"""The ``inproc`` runtime: ``lumi run``'s replicas as tasks in its own event loop.

``runtime = "inproc"`` for a service, or ``lumi run --inproc`` for the whole app: one process,
but each service still on its own endpoints, with its own runtime services (retry budgets,
breakers, metrics), exactly as it would run in a process of its own — only cheaper to start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import ClassVar

from lumi.brokers import create_broker
from lumi.brokers.base import Broker
from lumi.config import AppConfig, load_config
from lumi.model.errors import AppError, ConfigError, DefinitionError
from lumi.runtime_services.observability.logroute import hosted
from lumi.runtimes import stack
from lumi.runtimes.base import Output, Replica, ReplicaSpec, Runtime, StartError
from lumi.runtimes.replica import ReplicaRunner


class InprocReplica(Replica):
    """A replica running as a task in this event loop."""

    def __init__(
        self, runner: Callable[[], ReplicaRunner], output: Output, spec: ReplicaSpec | None = None
    ) -> None:
        self.pid = os.getpid()
        self._stop = asyncio.Event()
        self._ready = asyncio.Event()
        self._output = output
        self._task = asyncio.create_task(self._run(runner, spec))

    async def _run(self, runner: Callable[[], ReplicaRunner], spec: ReplicaSpec | None) -> None:
        if spec is not None:
            # this task and every task it starts log as this replica, to its own file
            hosted.set((spec.service, spec.replica))
        await runner().run(self._stop, self._ready.set)

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
            error = self._task.exception() if not self._task.cancelled() else None
            cause = f"{type(error).__name__}: {error}" if error is not None else "it ended"
            if isinstance(error, AppError | ConfigError | DefinitionError):
                cause = str(error)
            raise StartError(cause)
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
            self._output(f"failed: {type(exc).__name__}: {exc}")
            return 1
        return 0

    async def stop(self, grace: float) -> None:
        self._stop.set()
        try:
            async with asyncio.timeout(grace + 5):
                await asyncio.shield(self._task)
        except TimeoutError:
            await self.kill()
        except Exception:  # it failed while stopping: wait() reports it
            pass

    async def kill(self) -> None:
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task


class InprocRuntime(Runtime):
    """Runs replicas as tasks in ``lumi run``'s own process (``runtime = "inproc"``,
    ``lumi run --inproc``): one process for the whole app, each service still on its own
    endpoints, with its own runtime services, exactly as it would be in a process of its own."""

    name: ClassVar[str] = "inproc"

    def __init__(self, *, configure_process: bool = True) -> None:
        self._configs: dict[tuple[str, str | None], AppConfig] = {}
        self._configure_process = configure_process
        self._brokers: dict[tuple[str, str], Broker] = {}
        self._starting = asyncio.Lock()  # replicas of services started together share one

    async def _broker(self, config: AppConfig, service: str) -> Broker:
        """One broker per app and events URL, shared by the replicas in this process (so the
        in-process ``memory`` broker carries events between them)."""
        url = config.binding(service).events or "embedded"
        key = (str(config.root), url)
        async with self._starting:  # none is handed out before it has started
            broker = self._brokers.get(key)
            if broker is None:
                broker = create_broker(url, app_dir=config.root)
                await broker.start()
                self._brokers[key] = broker
        return broker

    async def aclose(self) -> None:
        while self._brokers:
            _, broker = self._brokers.popitem()
            await broker.aclose()

    async def start(
        self, spec: ReplicaSpec, sockets: Mapping[str, socket.socket], output: Output
    ) -> Replica:
        if spec.python:
            raise StartError(
                f"{spec.name} must run with {spec.python}, and the inproc runtime runs every "
                f'replica in this process: use runtime = "process"'
            )
        key = (spec.app_dir, spec.env)
        config = self._configs.get(key)
        if config is None:
            config = self._configs[key] = load_config(Path(spec.app_dir), spec.env)
            if self._configure_process:
                # The first in-process replica sets up this process's logs and tracing.
                stack.setup_shared_process(config)
                self._configure_process = False
        tracing = stack.current().tracing
        broker = await self._broker(config, spec.service)
        services = stack.runtime_for(config, spec.service, tracing=tracing)
        # The runner owns its sockets; the supervisor keeps its own for restarts.
        owned = {
            name: socket.socket(fileno=os.dup(sock.fileno())) for name, sock in sockets.items()
        }

        def runner() -> ReplicaRunner:
            try:
                return ReplicaRunner(spec, config, owned, services, broker)
            except BaseException:
                for sock in owned.values():
                    sock.close()
                raise

        return InprocReplica(runner, output, spec)
