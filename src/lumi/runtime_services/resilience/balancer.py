"""Client-side load balancing over a service's endpoints, with failover and circuit breakers.

The innermost handler of every outbound call, shared by every transport (a transport's channel
talks to one endpoint only): it picks an endpoint round-robin — preferring *local* endpoints
(the replica on the caller's own node) while any of them is healthy — skips endpoints whose
circuit is open, and when a channel raises :class:`~lumi.model.errors.NotSent` (nothing left
this process, so any method may go elsewhere) tries the next endpoint. Failures after sending
are not retried here; :mod:`~lumi.runtime_services.resilience.retry` decides those.

Each endpoint has a :class:`~lumi.runtime_services.resilience.breaker.CircuitBreaker` per
method, which sees only what the endpoint is responsible for: connection failures and the
callee's own faults. Caller-side outcomes (its own bad arguments or metadata, a deadline too
close to meet) are answers, not failures. An attempt cancelled at its deadline (by the retry
middleware's timer) is recorded as the DEADLINE_EXCEEDED it is.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from typing import Protocol

from lumi.model.errors import LumiError, NotSent, StatusCode, Unavailable
from lumi.pipeline.call import Call
from lumi.runtime_services.resilience.breaker import Breakers, CircuitOpen

_AT_DEADLINE = 0.005  # seconds: a cancellation this close to the deadline is its timer (which
# may fire a millisecond early)


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
        # Breakers are per method the caller knows; a name it does not know shares one.
        method = call.method if call.info is not None else "*"
        meta = call.metadata
        for index in self._order():
            breaker = self.breakers.get(self.endpoints[index], call.service, method)
            if not breaker.allow():
                open_circuits += 1
                failures.append(f"{self.endpoints[index]}: circuit open")
                continue
            budget = meta.remaining()
            started = time.monotonic()
            try:
                result = await self.channels[index].call(call)
            except NotSent as exc:
                breaker.failure()
                failures.append(f"{self.endpoints[index]}: {exc.message}")
                continue
            except LumiError as exc:
                breaker.record(exc.code, budget=budget, elapsed=time.monotonic() - started)
                raise
            except asyncio.CancelledError:
                left = meta.remaining()
                if left is not None and left < _AT_DEADLINE:  # timed out, not called off
                    breaker.record(StatusCode.DEADLINE_EXCEEDED, budget=budget)
                else:
                    breaker.release()  # cancelled: no verdict on the endpoint
                raise
            except BaseException:
                breaker.release()
                raise
            breaker.record(None, elapsed=time.monotonic() - started)
            return result
        if open_circuits == len(self.endpoints):
            raise CircuitOpen(
                f"circuit open for {self.service}.{method} at every endpoint "
                f"({', '.join(self.endpoints)})",
                {"endpoints": self.endpoints, "method": method},
            )
        raise Unavailable(f"cannot reach {self.service}: {'; '.join(failures)}")

    async def aclose(self) -> None:
        for channel in self.channels:
            await channel.aclose()
