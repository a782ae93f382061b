"""Client-side load balancing over a service's endpoints, with failover and circuit breakers.

The innermost handler of every outbound call, shared by every transport (a transport's channel
talks to one endpoint only): it picks an endpoint round-robin — preferring *local* endpoints
(the replica on the caller's own node) while any of them is healthy — skips endpoints whose
circuit is open, and when a channel raises :class:`~lumi.model.errors.NotSent` (nothing left
this process, so any method may go elsewhere) tries the next endpoint. Failures after sending
are not retried here; :mod:`~lumi.runtime_services.resilience.retry` decides those.

Each endpoint's :class:`~lumi.runtime_services.resilience.breaker.CircuitBreaker` sees only what
the endpoint is responsible for: connection failures and the callee's own faults. Caller-side
outcomes (its own bad arguments or metadata) count as answers, not failures.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Protocol

from lumi.model.errors import LumiError, NotSent, Unavailable
from lumi.pipeline.call import Call
from lumi.runtime_services.resilience.breaker import Breakers, CircuitOpen


class EndpointChannel(Protocol):
    """What the balancer sends through: a transport's channel to one endpoint."""

    endpoint: str

    async def call(self, call: Call) -> bytes: ...

    async def aclose(self) -> None: ...


class Balancer:
    """A handler sending each call to one of ``channels`` (one per endpoint of one service).

    ``local`` lists the endpoints on the caller's own node: while one of them accepts calls,
    only they are used (per-node services); otherwise every endpoint is.
    """

    def __init__(
        self,
        service: str,
        channels: Sequence[EndpointChannel],
        *,
        breakers: Breakers,
        local: Sequence[str] = (),
    ) -> None:
        if not channels:
            raise ValueError(f"{service} has no endpoint to call")
        self.service = service
        self.channels = list(channels)
        self.endpoints = [channel.endpoint for channel in self.channels]
        self.breakers = breakers
        on_node = set(local)
        self.local = [i for i, e in enumerate(self.endpoints) if e in on_node]
        self.remote = [i for i, e in enumerate(self.endpoints) if e not in on_node]
        self._turn = itertools.count()
        # Looked up once: a breaker lives as long as its Breakers, and this is every call's path.
        self._breakers = [breakers.get(endpoint) for endpoint in self.endpoints]
        self._only: list[int] | None = [0] if len(self.channels) == 1 else None

    def _order(self) -> list[int]:
        """Endpoint indices to try for one call: local ones first, each group rotated."""
        if self._only is not None:
            return self._only
        turn = next(self._turn)
        order: list[int] = []
        for group in (self.local, self.remote):
            if group:
                start = turn % len(group)
                order += group[start:] + group[:start]
        return order

    async def __call__(self, call: Call) -> bytes:
        failures: list[str] = []
        open_circuits = 0
        for index in self._order():
            breaker = self._breakers[index]
            if not breaker.allow():
                open_circuits += 1
                failures.append(f"{self.endpoints[index]}: circuit open")
                continue
            try:
                result = await self.channels[index].call(call)
            except NotSent as exc:
                breaker.failure()
                failures.append(f"{self.endpoints[index]}: {exc.message}")
                continue
            except LumiError as exc:
                breaker.record(exc.code)
                raise
            except BaseException:
                breaker.release()  # cancelled: no verdict on the endpoint
                raise
            breaker.success()
            return result
        if open_circuits == len(self.endpoints):
            raise CircuitOpen(
                f"circuit open for every endpoint of {self.service}",
                {"endpoints": self.endpoints},
            )
        raise Unavailable(f"cannot reach {self.service}: {'; '.join(failures)}")

    async def aclose(self) -> None:
        for channel in self.channels:
            await channel.aclose()
