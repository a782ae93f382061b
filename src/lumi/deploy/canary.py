"""A canary: a new version of a service beside its stable replicas, weighed, judged, and
promoted or rolled back.

:class:`CanaryRollout` runs the steps: the canary's replicas start (:class:`CanaryGroup`);
for each weight the route table gives them that share of the calls, and every ``interval``
for ``bake`` seconds both versions' metrics are compared (:mod:`lumi.deploy.analysis`). A
check that fails, a canary replica that exits or metrics that cannot be read stop it: the
weight goes back to the stable version, callers follow, then the canary drains. After the
last step the promotion (the stable replicas replaced on their sockets) runs while the canary
still takes the calls; then the weights go back to those sockets and the canary stops.

The canary's replicas get sockets of their own (so callers can weigh them, and their
``/metrics`` are theirs alone) and start through the service's runtime with the supervisor's
replica spec, pointed at the new artifact's interpreter. The control plane closes its copies of
their sockets once they serve: a canary is never restarted (a canary that dies has failed), and
when it drains, a caller still sending to it is refused at once (a ``NotSent`` the balancer
fails over) instead of waiting in a backlog no one accepts from.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from lumi import transports
from lumi.config import AppConfig
from lumi.deploy import analysis
from lumi.deploy.errors import RolloutFailed
from lumi.deploy.plan import Move
from lumi.deploy.routing import SETTLE, Router
from lumi.deploy.state import Record, Sample, Step
from lumi.runtimes.base import Output, Replica, StartError
from lumi.runtimes.supervisor import Supervisor
from lumi.transports.tls import Tls, TlsFiles

Say = Callable[[str], None]


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
                issuer = self.sup.issuer  # mTLS: the canary has its own certificate
                tls_dir = str(issuer.issue_replica(self.service, index)) if issuer else None
                spec = self.sup.replica_spec(self.service, index, tls_dir=tls_dir)
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


class CanaryRollout:
    """The canary of ``move`` (its new version runs with ``python``), step by step."""

    def __init__(
        self,
        sup: Supervisor,
        router: Router,
        config: AppConfig,
        move: Move,
        python: str,
        record: Record,
        tell: Say,
    ) -> None:
        self.sup = sup
        self.router = router
        self.config = config
        self.settings = config.deploy
        self.move = move
        self.record = record
        self.tell = tell
        self.group = CanaryGroup(sup, move.service, python, self.settings.canary_replicas)

    async def run(
        self, promote: Callable[[], Awaitable[None]], progress: Callable[[dict[str, Any]], None]
    ) -> None:
        """Start, weigh and judge the canary, then ``promote()``; RolloutFailed, with the
        canary gone and the stable version taking every call, otherwise."""
        move, tell = self.move, self.tell
        tell(f"starting the canary: {self.settings.canary_replicas} replica(s) of {move.ref}")
        try:
            await self.group.start()
        except StartError as exc:
            raise RolloutFailed(f"{move.ref} is not ready: {exc}") from None
        tell(f"canary ready at {' '.join(self.group.endpoints)}")
        try:
            await self._steps(progress)
            tell(
                f"promoting {move.ref}: every stable replica replaced, each ready before one drains"
            )
            await promote()
        except RolloutFailed:
            self.router.clear(move.service)
            tell(f"calls to {move.service} back on {move.current_version}")
            raise
        finally:
            self.router.clear(move.service)  # promoted: the stable sockets serve the new version
            await asyncio.sleep(SETTLE)
            await self.group.stop(self.config.defaults.grace_period)
            tell(f"canary of {move.ref} stopped")

    async def _steps(self, progress: Callable[[dict[str, Any]], None]) -> None:
        """Every step: the weight, then a check every ``interval`` for ``bake`` seconds."""
        settings, move, name = self.settings, self.move, self.move.service
        stable = [url for url in self.sup.endpoints[name] if url.startswith("http://")]
        canary = self.group.http_endpoints
        loop = asyncio.get_running_loop()
        issuer = self.sup.issuer  # mTLS: the metrics are read over TLS, as the operator
        tls = None
        if issuer is not None:
            tls = Tls(TlsFiles.in_folder(issuer.folder("operator"))).client_context()
        async with aiohttp.ClientSession() as session:
            try:
                base_canary = await analysis.scrape(session, canary, name, tls)
                base_stable = await analysis.scrape(session, stable, name, tls)
                for number, weight in enumerate(settings.weights, 1):
                    self.router.split(name, self.sup.endpoints[name], self.group.endpoints, weight)
                    steps = f"{number}/{len(settings.weights)}"
                    self.tell(
                        f"step {steps}: {weight}% of calls to the canary for {settings.bake:g}s"
                    )
                    deadline = loop.time() + settings.bake
                    step = Step(weight=weight, canary=Sample(), stable=Sample(), verdict="passed")
                    while (left := deadline - loop.time()) > 0:
                        ended = await self.group.wait_ended(min(settings.interval, left))
                        if ended:
                            raise RolloutFailed(f"{move.ref}: {ended}")
                        seen_canary = await analysis.scrape(session, canary, name, tls)
                        seen_stable = await analysis.scrape(session, stable, name, tls)
                        seen_canary, seen_stable = (
                            seen_canary - base_canary,
                            seen_stable - base_stable,
                        )
                        step = step.model_copy(
                            update={"canary": seen_canary.sample(), "stable": seen_stable.sample()}
                        )
                        what = f"{move.ref} (canary, step {steps}, {weight}%)"
                        progress({"what": what, **step.model_dump(mode="json")})
                        reason = analysis.judge(step.canary, step.stable, settings)
                        if reason:
                            self.record.steps.append(step.model_copy(update={"verdict": reason}))
                            self.tell(f"threshold crossed at {weight}%: {reason}")
                            raise RolloutFailed(f"{move.ref}: {reason}")
                    if step.canary.requests < settings.min_requests:
                        step.verdict = (
                            f"passed unjudged: {step.canary.requests} calls, fewer than "
                            f"min_requests ({settings.min_requests})"
                        )
                    self.record.steps.append(step)
                    seen = f"canary {step.canary.describe()}; stable {step.stable.describe()}"
                    self.tell(f"step {steps} {step.verdict}: {seen}")
            except ConnectionError as exc:
                raise RolloutFailed(f"{move.ref}: cannot read its metrics: {exc}") from None
