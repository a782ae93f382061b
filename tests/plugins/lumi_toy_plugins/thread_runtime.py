"""A toy runtime: ``runtime = "thread"`` — each replica in a thread with its own event loop.

It shows what a runtime needs from Lumi: a :class:`~lumi.runtimes.base.ReplicaSpec`, the sockets
the supervisor bound, and :class:`~lumi.runtimes.replica.ReplicaRunner` to host the service.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from lumi.config import load_config
from lumi.runtimes import stack
from lumi.runtimes.base import Output, Replica, ReplicaSpec, Runtime, StartError
from lumi.runtimes.replica import ReplicaRunner


class ThreadReplica(Replica):
    def __init__(self, spec: ReplicaSpec, sockets: Mapping[str, socket.socket]) -> None:
        self.pid = os.getpid()
        self.spec = spec
        # The runner owns (and closes) its sockets; the supervisor keeps its own for restarts.
        self.sockets = {n: socket.socket(fileno=os.dup(s.fileno())) for n, s in sockets.items()}
        self.ready_flag = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_event: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._main, name=spec.name, daemon=True)
        self.thread.start()

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()

    async def _run(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stop_event = asyncio.Event()
        config = load_config(Path(self.spec.app_dir), self.spec.env)
        services = stack.runtime_for(config, self.spec.service, tracing=stack.current().tracing)
        try:
            runner = ReplicaRunner(self.spec, config, self.sockets, services)
        except BaseException:
            for sock in self.sockets.values():
                sock.close()
            raise
        await runner.run(self.stop_event, self.ready_flag.set)

    async def ready(self, timeout: float) -> None:
        def wait() -> bool:
            while not self.ready_flag.wait(0.05):
                if self.done.is_set():
                    return False
            return True

        try:
            async with asyncio.timeout(timeout):
                ok = await asyncio.to_thread(wait)
        except TimeoutError:
            await self.kill()
            raise StartError(f"not ready after {timeout:g}s") from None
        if not ok:
            raise StartError(f"{type(self.error).__name__}: {self.error}")

    async def wait(self) -> int:
        await asyncio.to_thread(self.done.wait)
        return 0 if self.error is None else 1

    def _signal_stop(self) -> None:
        if self.loop is not None and self.stop_event is not None and not self.done.is_set():
            self.loop.call_soon_threadsafe(self.stop_event.set)

    async def stop(self, grace: float) -> None:
        self._signal_stop()
        await asyncio.to_thread(self.done.wait, grace + 5)

    async def kill(self) -> None:
        # A thread cannot be killed; stopping it without a grace period is the closest.
        self._signal_stop()
        await asyncio.to_thread(self.done.wait, 5)


class ThreadRuntime(Runtime):
    name: ClassVar[str] = "thread"

    async def start(
        self, spec: ReplicaSpec, sockets: Mapping[str, socket.socket], output: Output
    ) -> Replica:
        return ThreadReplica(spec, sockets)
