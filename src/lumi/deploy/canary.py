"""The canary's replicas: a new version of a service beside its stable replicas.

They get sockets of their own (so callers can weigh them, and their ``/metrics`` are theirs
alone) and start through the service's runtime with the supervisor's replica spec, pointed at
the new artifact's interpreter. The control plane closes its copies of their sockets once they
serve: a canary is never restarted (a canary that dies has failed), and when it drains, a
caller still sending to it is refused at once (a ``NotSent`` the balancer fails over) instead
of waiting in a backlog no one accepts from.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket

from lumi import transports
from lumi.runtimes.base import Output, Replica, StartError
from lumi.runtimes.supervisor import Supervisor


class CanaryGroup:
    """``count`` replicas of ``service`` running the interpreter ``python``."""

    def __init__(self, sup: Supervisor, service: str, python: str, count: int) -> None:
        self.sup = sup
        self.service = service
        self.python = python
        self.count = count
        self.replicas: list[Replica] = []
        self.endpoints: list[str] = []
        self._ended: asyncio.Future[str] | None = None
        self._watchers: list[asyncio.Task[None]] = []

    @property
    def http_endpoints(self) -> list[str]:
        return [url for url in self.endpoints if url.startswith("http://")]

    async def start(self) -> None:
        """Start every canary replica and wait until all serve; StartError (with every one
        stopped again) otherwise."""
        config = self.sup.config
        names = config.binding(self.service).rpc or ["http"]
        first = config.service(self.service).replicas
        sockets: list[dict[str, socket.socket]] = []
        try:
            for _ in range(self.count):
                bound = {t: transports.get(t).bind(config.defaults.host, 0) for t in names}
                sockets.append(bound)
                self.endpoints += [transports.get(t).endpoint_of(s) for t, s in bound.items()]
            runtime = self.sup.runtime_of(self.service)
            for offset, bound in enumerate(sockets):
                index = first + offset
                spec = self.sup.replica_spec(self.service, index)
                spec = dataclasses.replace(spec, python=self.python)
                output = self._output(f"{self.service}[{index}]")
                self.replicas.append(await runtime.start(spec, bound, output))
            timeout = config.defaults.start_timeout
            await asyncio.gather(*(replica.ready(timeout) for replica in self.replicas))
        except (StartError, OSError) as exc:
            await self.stop(0.0)
            raise StartError(str(exc)) from None
        except BaseException:
            await self.stop(0.0)
            raise
        finally:
            for bound in sockets:
                for sock in bound.values():
                    sock.close()  # theirs now (see the module docstring)
        loop = asyncio.get_running_loop()
        self._ended = loop.create_future()
        self._watchers = [asyncio.create_task(self._watch(r)) for r in self.replicas]

    def _output(self, source: str) -> Output:
        return lambda line: self.sup.emit(source, line)

    async def _watch(self, replica: Replica) -> None:
        code = await replica.wait()
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(f"a canary replica exited with code {code}")

    def ended(self) -> str | None:
        """Why the canary is no longer whole (a replica exited), or None."""
        if self._ended is not None and self._ended.done():
            return self._ended.result()
        return None

    async def wait_ended(self, timeout: float) -> str | None:
        """Wait up to ``timeout`` seconds for a canary replica to end; why, or None."""
        if self._ended is None:
            return None
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(asyncio.shield(self._ended), timeout)
        return None

    async def stop(self, grace: float) -> None:
        """Drain and stop every canary replica."""
        for watcher in self._watchers:
            watcher.cancel()
        self._watchers = []
        if self._ended is not None and not self._ended.done():
            self._ended.set_result("stopped")
        replicas, self.replicas = self.replicas, []
        await asyncio.gather(*(r.stop(grace) for r in replicas), return_exceptions=True)
