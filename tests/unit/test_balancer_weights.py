"""Weighted balancing (a canary's share of calls): exact shares, rerouting that keeps channels,
zero weights for failover only."""

from __future__ import annotations

import collections
import itertools

import pytest

from lumi.runtime_services.resilience.balancer import Balancer
from tests.unit.test_balancer import Endpoint, a_call, breakers


async def shares(balancer: Balancer, calls: int) -> collections.Counter[bytes]:
    return collections.Counter([await balancer(a_call()) for _ in range(calls)])


async def test_weights_give_exact_shares_evenly_spread() -> None:
    """45/45/10 over 100 calls is exactly 45, 45 and 10, and the 10 are spread, not bunched."""
    eps = [Endpoint("a"), Endpoint("b")]
    balancer = Balancer("Svc", eps, breakers=breakers())
    balancer.reroute({"a": 45, "b": 45, "c": 10}, Endpoint)
    answers = [await balancer(a_call()) for _ in range(100)]
    assert collections.Counter(answers) == {b"a": 45, b"b": 45, b"c": 10}
    canary_at = [i for i, answer in enumerate(answers) if answer == b"c"]
    assert max(b - a for a, b in itertools.pairwise(canary_at)) <= 11
    await balancer.aclose()


async def test_reroute_keeps_channels_connects_new_and_returns_dropped() -> None:
    """Endpoints kept keep their channel (and its pool); new ones are connected; dropped ones
    are handed back to be closed later, not closed under calls in flight."""
    a, b = Endpoint("a"), Endpoint("b")
    balancer = Balancer("Svc", [a, b], breakers=breakers())
    connected: list[str] = []

    def connect(url: str) -> Endpoint:
        connected.append(url)
        return Endpoint(url)

    dropped = balancer.reroute({"a": 1, "c": 1}, connect)
    assert connected == ["c"] and dropped == [b] and not b.closed
    assert balancer.channels[0] is a
    assert await shares(balancer, 4) == {b"a": 2, b"c": 2}
    assert balancer.reroute({"a": 1, "c": 1}, connect) == [] and connected == ["c"]
    await balancer.aclose()


async def test_zero_weight_endpoints_only_take_failover() -> None:
    """Weight 0 gets no calls while a weighted endpoint answers, and takes them when none does."""
    a, b = Endpoint("a", "refuse"), Endpoint("b")
    balancer = Balancer("Svc", [a, b], breakers=breakers())
    balancer.reroute({"a": 100, "b": 0}, Endpoint)
    assert await shares(balancer, 3) == {b"b": 3}  # a refuses: every call fails over to b
    a.behaviour = "ok"
    balancer.breakers = breakers()  # a's circuit opened while it refused
    assert await shares(balancer, 5) == {b"a": 5}
    await balancer.aclose()


def test_a_route_sending_nothing_anywhere_is_refused() -> None:
    """All-zero weights would leave the service unreachable: ValueError, routes unchanged."""
    balancer = Balancer("Svc", [Endpoint("a")], breakers=breakers())
    with pytest.raises(ValueError, match="need one above 0"):
        balancer.reroute({"a": 0}, Endpoint)
    assert balancer.weights is None and balancer.endpoints == ["a"]
