"""The local control plane behind ``lumi run``: start an app's replicas as OS processes.

* Every replica gets a socket per transport it is served on (``rpc = ["http", "grpc"]``) that
  the supervisor binds up front and keeps, so all endpoints are known before anything starts
  and a restarted replica serves on the same ports; the registry lists every endpoint.
* Services start in capability order; a service's replicas must report ready before its
  dependants start. One that cannot start stops the run with one line naming it and the cause.
* A replica that dies is restarted with exponential backoff; the restart is logged with its
  exit code.
* SIGINT/SIGTERM: services stop in reverse dependency order; each replica drains in-flight
  calls (bounded by the grace period) and is killed only if it overruns. Replicas run in their
  own sessions (so a terminal's Ctrl-C reaches only the supervisor, which orders the stop) and
  die with the supervisor (PR_SET_PDEATHSIG), so none is ever orphaned.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from lumi.config import AppConfig
from lumi.model.graph import start_order
from lumi.model.interface import ServiceInterface, interface
from lumi.runtimes.discovery import (
    Registry,
    ReplicaState,
    ServiceState,
    remove_registry,
    write_registry,
)
from lumi.runtimes.process import ReplicaSpec
from lumi.transports import wiring

Emit = Callable[[str, str], None]
"""Where output goes: ``emit(source, line)``; source is ``"Service[i]"`` or ``"lumi"``."""


class StartError(Exception):
    """A service that could not start; the message names it and the cause."""


class _Replica:
    def __init__(
        self, sup: Supervisor, service: str, index: int, socks: dict[str, socket.socket]
    ) -> None:
        self.sup = sup
        self.service = service
        self.index = index
        self.socks = socks  # one per transport the service is served on, in config order
        self.endpoints = [wiring.endpoint(t, sock) for t, sock in socks.items()]
        self.endpoint = self.endpoints[0]
        self.proc: asyncio.subprocess.Process | None = None
        self.state = ReplicaState(index=index, endpoint=self.endpoint, endpoints=self.endpoints)
        self.tail: collections.deque[str] = collections.deque(maxlen=20)
        self.ready_at = 0.0
        self.monitor: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return f"{self.service}[{self.index}]"

    async def start(self) -> None:
        """Spawn the process and wait until it reports ready; StartError otherwise."""
        read_fd, write_fd = os.pipe()
        config = self.sup.config
        spec = ReplicaSpec(
            app_dir=str(config.root),
            env=config.environment,
            service=self.service,
            replica=self.index,
            listeners={t: sock.fileno() for t, sock in self.socks.items()},
            ready_fd=write_fd,
            endpoints=self.sup.endpoints,
            parent_pid=os.getpid(),
        )
        environ = {
            **os.environ,
            **config.service(self.service).environment,
            **spec.to_environ(),
            "PYTHONUNBUFFERED": "1",
        }
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "lumi.runtimes.process",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(*(sock.fileno() for sock in self.socks.values()), write_fd),
                env=environ,
                cwd=config.root,
                start_new_session=True,
            )
        finally:
            os.close(write_fd)
        self.state.pid = self.proc.pid
        self.state.state = "starting"
        assert self.proc.stdout is not None and self.proc.stderr is not None
        for stream in (self.proc.stdout, self.proc.stderr):
            task = asyncio.create_task(self._pump(stream))
            self.sup.background.add(task)
            task.add_done_callback(self.sup.background.discard)
        message = await self._wait_ready(read_fd, self.sup.config.defaults.start_timeout)
        if "error" in message:
            await self.kill()
            raise StartError(f"{self.service} could not start: {message['error']}")
        self.state.state = "ready"
        self.ready_at = time.monotonic()

    async def _wait_ready(self, fd: int, timeout: float) -> dict[str, Any]:
        assert self.proc is not None
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", 0)
        )
        try:
            async with asyncio.timeout(timeout):
                line = await reader.readline()
            if line:
                result: dict[str, Any] = json.loads(line)
                return result
            code = await self.proc.wait()
            cause = self.tail[-1] if self.tail else "no output"
            return {"error": f"exited with code {code} before it was ready ({cause})"}
        except TimeoutError:
            return {"error": f"not ready after {timeout:g}s (defaults.start_timeout)"}
        finally:
            transport.close()

    async def _pump(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            text = line.decode("utf-8", "replace").rstrip("\n")
            self.tail.append(text)
            self.sup.emit(self.name, text)

    async def watch(self) -> None:
        """Restart the process whenever it dies, with exponential backoff."""
        delay = self.sup.restart_backoff
        while True:
            assert self.proc is not None
            code = await self.proc.wait()
            if self.sup.is_stopping():
                return
            if time.monotonic() - self.ready_at > self.sup.stable_after:
                delay = self.sup.restart_backoff
            self.state.restarts += 1
            self.state.state = "restarting"
            self.sup.save()
            self.sup.emit(
                "lumi",
                f"{self.name} exited with code {_describe(code)}; restarting in {delay:g}s "
                f"(restart {self.state.restarts})",
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.sup.max_backoff)
            if self.sup.is_stopping():
                return
            try:
                await self.start()
                self.sup.emit("lumi", f"{self.name} is back (pid {self.state.pid})")
            except StartError as exc:
                self.sup.emit("lumi", f"{self.name}: restart failed: {exc}")
            self.sup.save()

    async def stop(self, grace: float) -> None:
        if self.monitor is not None:
            self.monitor.cancel()
        self.close_sockets()
        if self.proc is None or self.proc.returncode is not None:
            return
        self.state.state = "stopping"
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(grace + 5):
                await self.proc.wait()
        except TimeoutError:
            self.sup.emit("lumi", f"{self.name} did not stop within {grace + 5:g}s; killing it")
            await self.kill()
        self.state.state = "stopped"

    def close_sockets(self) -> None:
        for sock in self.socks.values():
            sock.close()

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


def _describe(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"{code} ({signal.Signals(-code).name})"
    return str(code)


class Supervisor:
    """Runs an app's services as local processes until told to stop."""

    def __init__(
        self,
        config: AppConfig,
        *,
        emit: Emit,
        restart_backoff: float = 0.5,
        max_backoff: float = 30.0,
        stable_after: float = 10.0,
    ) -> None:
        self.config = config
        self.emit = emit
        self.restart_backoff = restart_backoff
        self.max_backoff = max_backoff
        self.stable_after = stable_after
        self.stopping = False
        self.interfaces: dict[str, ServiceInterface] = {
            cls.name: interface(cls) for cls in config.load_services()
        }
        self.order = start_order(self.interfaces.values())
        self.replicas: dict[str, list[_Replica]] = {}
        self.endpoints: dict[str, list[str]] = {}
        self._stop = asyncio.Event()
        self.background: set[asyncio.Task[None]] = set()

    def is_stopping(self) -> bool:
        return self.stopping

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> int:
        """Start everything, serve until SIGINT/SIGTERM, stop everything; the exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)
        try:
            self._bind_all()
            self.save()
            for name in self.order:
                await asyncio.gather(*(r.start() for r in self.replicas[name]))
                self.save()
                if self._stop.is_set():
                    break
        except StartError as exc:
            self.emit("lumi", f"error: {exc}")
            await self.shutdown()
            return 1
        for replicas in self.replicas.values():
            for replica in replicas:
                replica.monitor = asyncio.create_task(replica.watch())
        self._banner()
        await self._stop.wait()
        self.emit("lumi", "stopping (services in reverse dependency order)")
        await self.shutdown()
        self.emit("lumi", "stopped")
        return 0

    def _bind_all(self) -> None:
        host = self.config.defaults.host
        for name in self.order:
            service = self.config.service(name)
            replicas: list[_Replica] = []
            transports = self.config.binding(name).rpc or ["http"]
            for index in range(service.replicas):
                socks: dict[str, socket.socket] = {}
                for number, transport in enumerate(transports):
                    # a configured port is the first transport's; the others get free ports
                    port = 0 if service.port is None or number else service.port + index
                    try:
                        socks[transport] = wiring.bind(transport, host, port)
                    except OSError as exc:
                        for sock in socks.values():
                            sock.close()
                        for replica in replicas:
                            replica.close_sockets()
                        self._close_sockets()
                        what = "" if transport == "http" else f" for {transport}"
                        raise StartError(
                            f"{name} could not start: cannot listen on {host}:{port}{what}: "
                            f"{exc.strerror or exc}"
                        ) from None
                replicas.append(_Replica(self, name, index, socks))
            self.replicas[name] = replicas
            # every replica's endpoints, the first transport's first: callers default to it
            self.endpoints[name] = [
                r.endpoints[position] for position in range(len(transports)) for r in replicas
            ]

    def _close_sockets(self) -> None:
        for replicas in self.replicas.values():
            for replica in replicas:
                replica.close_sockets()

    async def shutdown(self) -> None:
        self.stopping = True
        grace = self.config.defaults.grace_period
        for name in reversed(self.order):
            await asyncio.gather(*(r.stop(grace) for r in self.replicas.get(name, [])))
        self._close_sockets()
        remove_registry(self.config.root, os.getpid())

    def save(self) -> None:
        registry = Registry(
            app=self.config.name,
            env=self.config.environment,
            supervisor_pid=os.getpid(),
            services={
                name: ServiceState(
                    endpoints=self.endpoints[name],
                    fingerprint=self.interfaces[name].fingerprint,
                    replicas=[r.state for r in self.replicas[name]],
                )
                for name in self.order
                if name in self.replicas
            },
        )
        write_registry(self.config.root, registry)

    def _banner(self) -> None:
        self.emit("lumi", f"app {self.config.name!r} is running; Ctrl-C stops it")
        for name in self.order:
            self.emit("lumi", f"  {name:<16} {' '.join(self.endpoints[name])}")
