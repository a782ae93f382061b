"""Client-side load balancing over a service's endpoints, with failover and circuit breakers.

The innermost handler of every outbound call, shared by every transport (a transport's channel
talks to one endpoint only): it picks an endpoint round-robin — preferring *local* endpoints
(the replica on the caller's own node) while any of them is healthy — skips endpoints whose
circuit is open, and when a channel raises :class:`~lumi.model.errors.NotSent` (nothing left
this process, so any method may go elsewhere) tries the next endpoint. Failures after sending
are not retried here; :mod:`~lumi.runtime_services.resilience.retry` decides those.

With **weights** (:meth:`Balancer.reroute`, driven by ``lumi deploy``'s route table) the first
choice of each call follows them exactly — smooth weighted round-robin, as nginx does, so a
10 % canary gets every tenth call rather than 10 % on average — and failover goes to the other
weighted endpoints, then to the zero-weight ones. Weights are per endpoint, not per replica
count, so one canary replica can take 10 % of the calls of a service with two stable ones.

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
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from lumi.model.errors import LumiError, NotSent, StatusCode, Unavailable
from lumi.pipeline.call import Call
from lumi.runtime_services.resilience.breaker import Breakers, CircuitBreaker, CircuitOpen

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
        self._all_breakers = breakers
        self._on_node = set(local)
        self._turn = itertools.count()
        self._use(list(channels), None)

    @property
    def breakers(self) -> Breakers:
        return self._all_breakers

    @breakers.setter
    def breakers(self, breakers: Breakers) -> None:
        self._all_breakers = breakers
        self._breakers: list[dict[str, CircuitBreaker]] = [{} for _ in self.channels]

    def _use(self, channels: list[EndpointChannel], weights: list[float] | None) -> None:
        # New lists, never mutated: a call in flight keeps the snapshot it started with.
        self.channels = channels
        self.endpoints = [channel.endpoint for channel in channels]
        self.weights = weights
        self._credit = [0.0] * len(channels)
        # each endpoint's breakers by method, looked up without building a key per call
        self._breakers = [{} for _ in channels]
        self.local = [i for i, e in enumerate(self.endpoints) if e in self._on_node]
        self.remote = [i for i, e in enumerate(self.endpoints) if e not in self._on_node]
        self._only: list[int] | None = [0] if len(channels) == 1 else None

    def reroute(
        self, weights: Mapping[str, float], connect: Callable[[str], EndpointChannel]
    ) -> list[EndpointChannel]:
        """Send calls by ``weights`` (endpoint → share; 0: failover only) from now on.

        Endpoints not named are dropped and new ones connected with ``connect``; returns the
        dropped channels, for the caller to close once the calls in flight on them are done.
        """
        if not any(weight > 0 for weight in weights.values()):
            raise ValueError(f"{self.service}: route weights need one above 0, not {weights}")
        kept = {channel.endpoint: channel for channel in self.channels}
        channels = [kept.pop(url) if url in kept else connect(url) for url in weights]
        self._use(channels, [max(0.0, float(weights[c.endpoint])) for c in channels])
        return list(kept.values())

    def _order(self) -> list[int]:
        """Endpoint indices to try for one call: local ones first, each group rotated (or, with
        weights, led by the weighted choice)."""
        if self._only is not None:
            return self._only
        turn = next(self._turn)
        order: list[int] = []
        for group in (self.local, self.remote):
            if not group:
                continue
            if self.weights is None:
                start = turn % len(group)
                order += group[start:] + group[:start]
            else:
                order += self._weighted(group, self.weights)
        return order

    def _weighted(self, group: list[int], weights: list[float]) -> list[int]:
        """Smooth weighted round-robin: every endpoint earns its weight in credit per call, the
        richest is chosen and pays the total; the others follow for failover."""
        live = [i for i in group if weights[i] > 0]
        idle = [i for i in group if weights[i] <= 0]
        if not live:
            return idle
        credit = self._credit
        for i in live:
            credit[i] += weights[i]
        best = max(live, key=credit.__getitem__)
        credit[best] -= sum(weights[i] for i in live)
        at = live.index(best)
        return live[at:] + live[:at] + idle

    async def __call__(self, call: Call) -> bytes:
        failures: list[str] = []
        open_circuits = 0
        # Breakers are per method the caller knows; a name it does not know shares one.
        method = call.method if call.info is not None else "*"
        meta = call.metadata
        channels = self.channels  # this call's snapshot (reroute makes new lists)
        by_endpoint = self._breakers if call.service == self.service else None
        for index in self._order():
            channel = channels[index]
            endpoint = channel.endpoint
            if by_endpoint is None:
                breaker = self._all_breakers.get(endpoint, call.service, method)
            else:
                found = by_endpoint[index].get(method)
                if found is not None:
                    breaker = found
                else:
                    breaker = by_endpoint[index][method] = self._all_breakers.get(
                        endpoint, call.service, method
                    )
            if not breaker.allow():
                open_circuits += 1
                failures.append(f"{endpoint}: circuit open")
                continue
            budget = meta.remaining()
            started = time.monotonic()
            try:
                result = await channel.call(call)
            except NotSent as exc:
                breaker.failure()
                failures.append(f"{endpoint}: {exc.message}")
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
        if open_circuits == len(channels):
            endpoints = [channel.endpoint for channel in channels]
            raise CircuitOpen(
                f"circuit open for {self.service}.{method} at every endpoint "
                f"({', '.join(endpoints)})",
                {"endpoints": endpoints, "method": method},
            )
        raise Unavailable(f"cannot reach {self.service}: {'; '.join(failures)}")

    async def aclose(self) -> None:
        for channel in self.channels:
            await channel.aclose()
