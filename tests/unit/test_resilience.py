"""Resilience: backoff, retry budget, circuit breaker, the retry middleware, dedupe, waits."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

import lumi
from lumi import retrying
from lumi.model.context import Metadata
from lumi.model.errors import AppError, StatusCode
from lumi.model.hints import Retry
from lumi.model.interface import MethodInfo
from lumi.pipeline import Call
from lumi.retrying import wait_ready
from lumi.runtime_services.resilience.balancer import Balancer
from lumi.runtime_services.resilience.breaker import CircuitBreaker, CircuitOpen, State
from lumi.runtime_services.resilience.budget import RetryBudget
from lumi.runtime_services.resilience.idempotency import IdempotencyCache
from lumi.runtime_services.resilience.policies import (
    BreakerSettings,
    BudgetSettings,
    Override,
    Policies,
)
from lumi.runtime_services.resilience.retry import Resilience
from lumi.runtimes import stack

FAST = Retry(attempts=5, backoff=0.001, max_backoff=0.002)


def info(idempotent: bool = False, **extra: object) -> MethodInfo:
    return MethodInfo(params={}, returns={}, idempotent=idempotent, **extra)  # type: ignore[arg-type]


def call(meta: Metadata | None = None, *, idempotent: bool = False, service: str = "Dep") -> Call:
    return Call(service, "m", b"{}", meta or Metadata(idempotency_key="k1"), info=info(idempotent))


class Flaky:
    """A handler failing with ``errors`` in turn, then answering; records what it saw."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.seen: list[Call] = []

    async def __call__(self, c: Call) -> bytes:
        self.seen.append(c)
        if self.errors:
            raise self.errors.pop(0)
        return b"42"


def test_full_jitter_stays_under_the_growing_cap() -> None:
    """The n-th delay is uniform in [0, min(max, base * mult**n)]."""
    policy = Retry(attempts=10, backoff=0.1, max_backoff=1.0, multiplier=2.0)
    for n, cap in enumerate([0.1, 0.2, 0.4, 0.8, 1.0, 1.0]):
        delays = [retrying.delay(policy, n) for _ in range(200)]
        assert all(0 <= d <= cap for d in delays) and max(delays) > cap / 2
        assert retrying.ceiling(policy, n) == pytest.approx(cap)


def test_retry_budget_keeps_retries_to_the_ratio_plus_reserve() -> None:
    """Retries granted never exceed reserve + ratio x calls."""
    budget = RetryBudget(0.2, reserve=2, max_tokens=100)
    granted = 0
    for _ in range(100):
        budget.deposit()
        while budget.withdraw():
            granted += 1
    assert granted <= 2 + 0.2 * 100 and granted >= 20
    assert budget.refused > 0


def test_breaker_opens_half_opens_and_closes() -> None:
    """Closed → open after N failures → half-open after the wait → closed on success."""
    now = [0.0]
    changes: list[State] = []
    breaker = CircuitBreaker(
        "e", failure_rate=0.5, window=4, min_calls=4, reset_timeout=1.0, clock=lambda: now[0],
        on_change=lambda _, state: changes.append(state),
    )  # fmt: skip
    for code in (StatusCode.UNAVAILABLE, None, StatusCode.UNAVAILABLE):
        assert breaker.allow()
        breaker.record(code)
    assert breaker.state is State.CLOSED  # 2 of 3: too few calls to judge yet
    breaker.record(StatusCode.DEADLINE_EXCEEDED)
    assert breaker.state is State.OPEN and not breaker.allow()
    with pytest.raises(CircuitOpen, match="circuit open for e"):
        breaker.check()
    now[0] = 1.5
    assert breaker.allow() and breaker.state is State.HALF_OPEN
    assert not breaker.allow()  # one trial at a time
    breaker.record(StatusCode.INTERNAL)  # the trial failed: open again, twice as long
    now[0] = 3.0
    assert not breaker.allow()
    now[0] = 3.6
    assert breaker.allow()
    breaker.record(None)
    assert breaker.state is State.CLOSED
    assert changes == [State.OPEN, State.HALF_OPEN, State.OPEN, State.HALF_OPEN, State.CLOSED]
    breaker.record(StatusCode.INVALID_ARGUMENT)  # a client error is not the endpoint's fault
    assert breaker.failures == 0


def test_breaker_tolerates_a_short_burst_among_successes() -> None:
    """A few failures among many successes (a restart's in-flight calls) keep it closed."""
    breaker = CircuitBreaker("e", failure_rate=0.5, window=20, min_calls=10)
    for _ in range(15):
        breaker.record(None)
    for _ in range(8):
        breaker.record(StatusCode.UNAVAILABLE)
    assert breaker.state is State.CLOSED and breaker.failures == 8
    for _ in range(3):
        breaker.record(StatusCode.UNAVAILABLE)
    assert breaker.state is State.OPEN


async def test_unavailable_is_retried_with_the_same_idempotency_key() -> None:
    """UNAVAILABLE and connection errors are retried; every attempt has the same key."""
    flaky = Flaky(lumi.Unavailable("down"), ConnectionRefusedError("refused"))
    mw = Resilience("Caller", Policies(retry=FAST))
    assert await mw(call(), flaky) == b"42"
    assert len(flaky.seen) == 3
    assert {c.metadata.idempotency_key for c in flaky.seen} == {"k1"}


async def test_deadline_exceeded_is_retried_only_for_idempotent_methods() -> None:
    """DEADLINE_EXCEEDED is retried for an idempotent method, not for another one."""
    mw = Resilience(None, Policies(retry=FAST))
    idem = Flaky(lumi.DeadlineExceeded("slow"))
    assert await mw(call(idempotent=True), idem) == b"42" and len(idem.seen) == 2
    other = Flaky(lumi.DeadlineExceeded("slow"))
    with pytest.raises(lumi.DeadlineExceeded):
        await mw(call(idempotent=False), other)
    assert len(other.seen) == 1
    bad = Flaky(lumi.InvalidArgument("no"))
    with pytest.raises(lumi.InvalidArgument):
        await mw(call(idempotent=True), bad)
    assert len(bad.seen) == 1


async def test_attempts_stop_at_the_policy_limit() -> None:
    """A call is attempted at most retry.attempts times."""
    flaky = Flaky(*[lumi.Unavailable("down")] * 10)
    mw = Resilience(None, Policies(retry=Retry(attempts=3, backoff=0.001)))
    with pytest.raises(lumi.Unavailable):
        await mw(call(), flaky)
    assert len(flaky.seen) == 3


async def test_no_retry_starts_past_the_deadline_and_attempts_are_cut_at_it() -> None:
    """An attempt is cancelled at the deadline; a retry that cannot finish in time is skipped."""
    mw = Resilience(None, Policies(retry=Retry(attempts=5, backoff=0.5, max_backoff=0.5)))

    async def hang(c: Call) -> bytes:
        await asyncio.sleep(10)
        return b""

    started = time.monotonic()
    with pytest.raises(lumi.DeadlineExceeded, match="before the deadline"):
        await mw(call(Metadata(deadline=time.time() + 0.1), idempotent=True), hang)
    assert time.monotonic() - started < 5  # cut at the deadline, not after the 10 s hang


async def test_method_and_capability_timeouts_set_the_deadline() -> None:
    """The method's timeout sets a deadline; a capability override from config wins."""
    seen: list[float | None] = []

    async def record(c: Call) -> bytes:
        seen.append(c.metadata.remaining())
        return b"1"

    policies = Policies(capabilities={"Other": Override(timeout=0.5)})
    mw = Resilience(None, policies)
    c = call()
    c.info = info(timeout=5.0)
    await mw(c, record)
    c = call(service="Other")
    c.info = info(timeout=5.0)
    await mw(c, record)
    assert seen[0] is not None and 4.0 < seen[0] <= 5.0
    assert seen[1] is not None and 0.3 < seen[1] <= 0.5


async def test_breaker_fails_fast_and_the_budget_caps_amplification() -> None:
    """Against an always-failing dependency, attempts/calls stays under 1.2 and calls fail fast
    (the balancer's breaker for the endpoint and method opens)."""

    class Broken:
        endpoint = "test://dep"
        attempts = 0

        async def call(self, c: Call) -> bytes:
            self.attempts += 1
            raise lumi.Unavailable("always down")

        async def aclose(self) -> None:
            pass

    policies = Policies(
        retry=FAST,
        breaker=BreakerSettings(min_calls=10, reset_timeout=60),
        budget=BudgetSettings(ratio=0.2, reserve=2),
    )
    services = stack.RuntimeServices(policies=policies)
    channel = Broken()
    balancer = Balancer("Dep", [channel], breakers=services.breakers("Front"))
    mw = Resilience("Front", policies)
    errors: list[Exception] = []
    for _ in range(200):
        try:
            await mw(call(), balancer)
        except lumi.Unavailable as exc:
            errors.append(exc)
    assert len(errors) == 200
    assert channel.attempts / 200 <= 1.2
    assert isinstance(errors[-1], CircuitOpen)
    assert services.breakers("Front").get("test://dep", "Dep", "m").state is State.OPEN


async def test_dedupe_answers_a_retry_from_the_first_result() -> None:
    """A repeated idempotency key gets the stored result; the method runs once."""
    runs = 0

    async def place(c: Call) -> bytes:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.01)
        return f'"order-{runs}"'.encode()

    dedupe = IdempotencyCache(max_entries=2)
    first = await dedupe(call(), place)
    assert await dedupe(call(), place) == first and runs == 1
    # Concurrent duplicates wait for the first one.
    key2 = Metadata(idempotency_key="k2")
    results = await asyncio.gather(*(dedupe(call(key2), place) for _ in range(3)))
    assert len(set(results)) == 1 and runs == 2
    # Without a key, or after eviction, the call runs.
    await dedupe(call(Metadata()), place)
    await dedupe(call(Metadata(idempotency_key="k3")), place)
    assert len(dedupe) == 2
    await dedupe(call(), place)  # k1 was evicted (bounded cache)
    assert runs == 5


async def test_dedupe_forgets_failures() -> None:
    """A failed call is not remembered: its retry runs again."""
    flaky = Flaky(lumi.Unavailable("down"))
    dedupe = IdempotencyCache()
    with pytest.raises(lumi.Unavailable):
        await dedupe(call(), flaky)
    assert await dedupe(call(), flaky) == b"42" and len(flaky.seen) == 2


async def test_wait_ready_retries_with_a_log_line_each_attempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """wait_ready polls until ready, logging each failed attempt; gives up with AppError."""
    answers = [ConnectionRefusedError("refused"), False, True]

    def check() -> bool:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    fast = Retry(attempts=10, backoff=0.001, max_backoff=0.01)
    with caplog.at_level(logging.INFO, logger="lumi.ready"):
        assert await wait_ready(check, "Inventory", policy=fast) == 3
    waiting = [r.getMessage() for r in caplog.records if "waiting for" in r.getMessage()]
    assert len(waiting) == 2 and "ConnectionRefusedError: refused" in waiting[0]
    assert "attempt 1" in waiting[0] and "attempt 2" in waiting[1]

    async def never() -> bool:
        return False

    with pytest.raises(AppError, match="Db was not ready after .* attempts"):
        await wait_ready(never, "Db", timeout=0.05, policy=fast)
