"""The runtime services' limits, in isolation: thread pools, breakers that count only the
callee's faults, idempotency scoping and bounds, metric label bounds, the access-log budget."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

import lumi
from lumi.model.context import Metadata
from lumi.model.errors import StatusCode
from lumi.model.interface import MethodInfo
from lumi.pipeline import Call
from lumi.pipeline.threads import ThreadPool
from lumi.runtime_services.observability.log_budget import LogBudget
from lumi.runtime_services.observability.metrics import MAX_SERIES, OTHER, Metrics
from lumi.runtime_services.resilience.balancer import Balancer
from lumi.runtime_services.resilience.breaker import Breakers, CircuitBreaker, State
from lumi.runtime_services.resilience.idempotency import IdempotencyCache
from lumi.testing import wait_until

# -- thread pools ------------------------------------------------------------------------------


async def test_a_full_pool_refuses_at_once_and_a_waiting_call_can_leave() -> None:
    """With 1 thread and 1 waiting place, a third call is RESOURCE_EXHAUSTED at once; a waiting
    call cancelled before it got a thread never runs, and gives its place back."""
    pool = ThreadPool("Svc", size=1, queue=1)
    release = threading.Event()
    ran: list[str] = []

    def work(name: str) -> str:
        ran.append(name)
        release.wait(5)
        return name

    first = asyncio.create_task(pool.run(work, "first"))
    await asyncio.sleep(0.05)
    waiting = asyncio.create_task(pool.run(work, "waiting"))
    await asyncio.sleep(0.05)
    with pytest.raises(lumi.ResourceExhausted, match="services.Svc.threads"):
        await pool.run(work, "third")
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert pool.admitted == 1  # the waiting call left the queue
    release.set()
    assert await first == "first" and ran == ["first"]
    await wait_until(lambda: pool.admitted == 0, message="the thread released")
    pool.shutdown()


async def test_pool_threads_see_the_callers_context() -> None:
    """A sync method sees the context variables of the call it serves (lumi.context())."""
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("caller's")
    pool = ThreadPool("Svc", size=2)
    assert await pool.run(var.get) == "caller's"
    pool.shutdown()


# -- breakers ----------------------------------------------------------------------------------


def test_only_a_fair_timeout_counts_against_the_callee() -> None:
    """DEADLINE_EXCEEDED counts only if the attempt had min_deadline and 4x the usual latency;
    a deadline a few ms away, or a caller's error, is no verdict on the callee."""
    breaker = CircuitBreaker("e", "S", "m", min_deadline=0.1, min_calls=2, failure_rate=0.5)
    breaker.record(None, elapsed=0.05)  # the method usually takes 50 ms
    for _ in range(10):
        breaker.record(StatusCode.DEADLINE_EXCEEDED, budget=0.005)  # a caller's 5 ms deadline
        breaker.record(StatusCode.DEADLINE_EXCEEDED, budget=0.15)  # < 4 x 50 ms: not fair
        breaker.record(StatusCode.INVALID_ARGUMENT)
    assert breaker.state is State.CLOSED and breaker.failures == 0
    breaker.record(StatusCode.DEADLINE_EXCEEDED, budget=1.0)
    breaker.record(StatusCode.DEADLINE_EXCEEDED, budget=None)  # no deadline: its own timeout
    assert breaker.failures == 2
    hung = CircuitBreaker("e", "S", "m", min_deadline=0.1, min_calls=2, failure_rate=0.5)
    hung.record(StatusCode.DEADLINE_EXCEEDED, budget=1.0)
    hung.record(StatusCode.DEADLINE_EXCEEDED, budget=1.0)
    assert hung.state is State.OPEN


class Endpoint:
    """A channel whose methods fail or answer as told."""

    endpoint = "test://one"

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def call(self, call: Call) -> bytes:
        self.calls.append(call.method)
        if call.method == "broken":
            raise lumi.Internal("always")
        return b"1"

    async def aclose(self) -> None:
        pass


def known(method: str) -> Call:
    info = MethodInfo(params={}, returns={})
    return Call("S", method, b"{}", Metadata(), info=info)


async def test_one_failing_method_opens_only_its_own_breaker() -> None:
    """The breaker of a failing method opens; another method of the same endpoint still goes
    through; unknown method names share one breaker."""
    breakers = Breakers(lambda e, s, m: CircuitBreaker(e, s, m, min_calls=3, reset_timeout=60))
    channel = Endpoint()
    balancer = Balancer("S", [channel], breakers=breakers)
    for _ in range(5):
        with pytest.raises(lumi.Unavailable if len(channel.calls) >= 3 else lumi.Internal):
            await balancer(known("broken"))
    assert channel.calls.count("broken") == 3  # then refused locally
    assert await balancer(known("fine")) == b"1"
    for name in ("x1", "x2", "x3"):
        await balancer(Call("S", name, b"{}", Metadata()))  # no info: names from outside
    assert set(breakers.states()) == {
        "S.broken at test://one",
        "S.fine at test://one",
        "S.* at test://one",
    }


# -- idempotency -------------------------------------------------------------------------------


def keyed(key: str, body: bytes, caller: str | None = None) -> Call:
    return Call("S", "m", body, Metadata(idempotency_key=key, caller=caller))


async def test_a_key_is_the_callers_and_bound_to_its_arguments() -> None:
    """Same caller, key and arguments: the first answer. Another caller: its own run. Same key,
    other arguments: FAILED_PRECONDITION, also while the first call still runs."""
    runs = 0

    async def place(call: Call) -> bytes:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.01)
        return b'"%d"' % runs

    cache = IdempotencyCache()
    first = asyncio.create_task(cache(keyed("k", b'{"a":1}', "A"), place))
    await asyncio.sleep(0)
    with pytest.raises(lumi.FailedPrecondition, match="other arguments"):
        await cache(keyed("k", b'{"a":2}', "A"), place)
    assert await first == b'"1"'
    assert await cache(keyed("k", b'{"a":1}', "A"), place) == b'"1"'
    assert await cache(keyed("k", b'{"a":1}', "B"), place) == b'"2"'
    with pytest.raises(lumi.FailedPrecondition):
        await cache(keyed("k", b'{"a":2}', "A"), place)
    assert runs == 2


async def test_the_cache_is_bounded_in_bytes() -> None:
    """Answers past max_bytes push the oldest out; one larger than the cache is not kept."""

    async def answer(call: Call) -> bytes:
        return b"x" * 300

    cache = IdempotencyCache(max_bytes=2000)
    for i in range(20):
        await cache(keyed(f"k{i}", b"{}"), answer)
    assert cache.bytes <= 2000 and 0 < len(cache) < 20
    huge = IdempotencyCache(max_bytes=100)
    await huge(keyed("k", b"{}"), answer)
    assert len(huge) == 0 and huge.bytes == 0


# -- metrics and logs --------------------------------------------------------------------------


def test_each_metric_keeps_a_bounded_number_of_label_sets() -> None:
    """Past MAX_SERIES label sets, more are counted together under "(other)"."""
    metrics = Metrics()
    for i in range(MAX_SERIES + 500):
        metrics.request("S", f"m{i}", "OK", 0.001)
        metrics.reject("c", f"s{i}", "circuit_open")
    assert len(metrics.requests) == MAX_SERIES + 1
    assert metrics.requests[(OTHER, OTHER, OTHER)].count == 500
    assert metrics.value("lumi_client_rejected_total", caller=OTHER, service=OTHER, reason=OTHER)


def test_the_log_budget_allows_a_burst_then_a_rate_and_counts_the_rest() -> None:
    """A burst of lines passes, then one per 1/rate seconds; the dropped ones are counted."""
    now = [0.0]
    budget = LogBudget(rate=10, burst=5, clock=lambda: now[0])
    assert [budget.allow() for _ in range(8)] == [True] * 5 + [False] * 3
    now[0] += 0.1
    assert budget.allow() and not budget.allow()
    assert budget.take_dropped() == 4 and budget.take_dropped() == 0
    now[0] += 100  # a long quiet: back to a full burst, not more
    assert sum(budget.allow() for _ in range(10)) == 5
