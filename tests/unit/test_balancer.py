"""The client-side balancer: endpoint choice, failover on NotSent, breakers per endpoint and
method (a call without the callee's interface uses the method "*")."""

from __future__ import annotations

import asyncio

import pytest

import lumi
from lumi.model.context import Metadata
from lumi.model.errors import NotSent
from lumi.pipeline.call import Call
from lumi.runtime_services.resilience.balancer import Balancer
from lumi.runtime_services.resilience.breaker import Breakers, CircuitBreaker, CircuitOpen, State


class Endpoint:
    """A channel to one fake endpoint that answers, refuses, fails or hangs as told."""

    def __init__(self, name: str, behaviour: str = "ok") -> None:
        self.endpoint = name
        self.behaviour = behaviour
        self.calls = 0
        self.closed = False

    async def call(self, call: Call) -> bytes:
        self.calls += 1
        if self.behaviour == "refuse":
            raise NotSent(f"{self.endpoint}: connection refused")
        if self.behaviour == "internal":
            raise lumi.Internal("boom")
        if self.behaviour == "invalid":
            raise lumi.InvalidArgument("bad input")
        if self.behaviour == "hang":
            await asyncio.sleep(10)
        return self.endpoint.encode()

    async def aclose(self) -> None:
        self.closed = True


def a_call() -> Call:
    return Call("Svc", "m", b"{}", Metadata())


def breakers(clock: list[float] | None = None) -> Breakers:
    now = clock or [0.0]
    return Breakers(
        lambda e, s, m: CircuitBreaker(
            e, s, m, min_calls=2, window=4, reset_timeout=1, clock=lambda: now[0]
        )
    )


async def test_calls_rotate_over_every_endpoint() -> None:
    """Successive calls go round-robin over the endpoints."""
    eps = [Endpoint("a"), Endpoint("b"), Endpoint("c")]
    balancer = Balancer("Svc", eps, breakers=breakers())
    answers = [await balancer(a_call()) for _ in range(6)]
    assert sorted(answers) == [b"a", b"a", b"b", b"b", b"c", b"c"]
    await balancer.aclose()
    assert all(e.closed for e in eps)


async def test_a_refused_endpoint_is_skipped_and_counted() -> None:
    """NotSent moves the call to the next endpoint; the refusals open that endpoint's circuit,
    after which it is not even tried."""
    dead, live = Endpoint("dead", "refuse"), Endpoint("live")
    shared = breakers()
    balancer = Balancer("Svc", [dead, live], breakers=shared)
    assert [await balancer(a_call()) for _ in range(6)] == [b"live"] * 6
    assert shared.get("dead", "Svc", "*").state is State.OPEN
    tried = dead.calls
    await balancer(a_call())
    assert dead.calls == tried  # skipped while open


async def test_every_endpoint_refusing_is_unavailable_naming_each() -> None:
    """With nothing reachable the caller gets UNAVAILABLE listing why for each endpoint."""
    balancer = Balancer(
        "Svc", [Endpoint("x", "refuse"), Endpoint("y", "refuse")], breakers=breakers()
    )
    with pytest.raises(lumi.Unavailable, match="cannot reach Svc: .*x: .*refused.*y: .*refused"):
        await balancer(a_call())


async def test_every_circuit_open_fails_fast_with_circuit_open() -> None:
    """When every endpoint's circuit is open the call fails at once, nothing is sent."""
    eps = [Endpoint("a", "internal"), Endpoint("b", "internal")]
    balancer = Balancer("Svc", eps, breakers=breakers())
    for _ in range(4):
        with pytest.raises(lumi.Internal):
            await balancer(a_call())
    sent = sum(e.calls for e in eps)
    with pytest.raises(CircuitOpen, match=r"circuit open for Svc\.\* at every endpoint \(a, b\)"):
        await balancer(a_call())
    assert sum(e.calls for e in eps) == sent


async def test_caller_errors_do_not_open_the_circuit() -> None:
    """INVALID_ARGUMENT is an answer from a healthy endpoint: it never opens the breaker."""
    shared = breakers()
    balancer = Balancer("Svc", [Endpoint("a", "invalid")], breakers=shared)
    for _ in range(10):
        with pytest.raises(lumi.InvalidArgument):
            await balancer(a_call())
    assert shared.get("a", "Svc", "*").state is State.CLOSED


async def test_local_endpoints_are_preferred_while_healthy() -> None:
    """A node-local endpoint takes every call; when it refuses, others take over; when its
    circuit closes again, calls come back to it."""
    clock = [0.0]
    local, far = Endpoint("local"), Endpoint("far")
    shared = breakers(clock)
    balancer = Balancer("Svc", [far, local], breakers=shared, local=["local"])
    assert [await balancer(a_call()) for _ in range(4)] == [b"local"] * 4
    local.behaviour = "refuse"
    assert [await balancer(a_call()) for _ in range(4)] == [b"far"] * 4
    assert shared.get("local", "Svc", "*").state is State.OPEN
    local.behaviour = "ok"
    clock[0] += 2  # past the reset timeout: the next call is a trial on the local endpoint
    assert await balancer(a_call()) == b"local"
    assert shared.get("local", "Svc", "*").state is State.CLOSED


async def test_a_cancelled_trial_gives_its_slot_back() -> None:
    """A half-open trial that is cancelled does not leave the breaker waiting forever."""
    clock = [0.0]
    ep = Endpoint("a", "refuse")
    shared = breakers(clock)
    balancer = Balancer("Svc", [ep], breakers=shared)
    for _ in range(2):
        with pytest.raises(lumi.Unavailable):
            await balancer(a_call())
    assert shared.get("a", "Svc", "*").state is State.OPEN
    clock[0] += 2
    ep.behaviour = "hang"
    trial = asyncio.create_task(balancer(a_call()))
    await lumi.testing.wait_until(lambda: ep.calls == 3, message="the trial to be sent")
    trial.cancel()
    with pytest.raises(asyncio.CancelledError):
        await trial
    ep.behaviour = "ok"
    assert await balancer(a_call()) == b"a"  # the slot came back: another trial went through
    assert shared.get("a", "Svc", "*").state is State.CLOSED
