"""The client-side resilience middleware: deadlines, retries, retry budget, circuit breakers.

For each outbound call:

1. the deadline is the tightest of the inherited one, the method's timeout and the configured
   one (:mod:`lumi.runtime_services.resilience.policies`); an attempt never outlives it, and no
   retry starts when its backoff would not end before it;
2. an attempt that fails with UNAVAILABLE or a connection error is retried; one that fails with
   DEADLINE_EXCEEDED is retried only for an idempotent method; nothing else is retried. The
   idempotency key stays the same on every attempt, so the callee can tell a retry from a new
   call (:mod:`lumi.runtime_services.resilience.idempotency`);
3. waits grow exponentially with full jitter
   (:mod:`lumi.retrying`);
4. each retry spends a token of the caller's
   :class:`~lumi.runtime_services.resilience.budget.RetryBudget`;
5. the target's :class:`~lumi.runtime_services.resilience.breaker.CircuitBreaker` sees every
   attempt's outcome and, while open, fails calls at once with UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import logging
import time

from lumi import retrying
from lumi.model.errors import DeadlineExceeded, LumiError, StatusCode, Unavailable
from lumi.pipeline import Call, Handler
from lumi.runtime_services.observability.metrics import Metrics
from lumi.runtime_services.resilience.breaker import Breakers, CircuitBreaker, CircuitOpen, State
from lumi.runtime_services.resilience.budget import RetryBudget
from lumi.runtime_services.resilience.policies import Policies

log = logging.getLogger("lumi.resilience")

RETRYABLE = frozenset({StatusCode.UNAVAILABLE})
RETRYABLE_IF_IDEMPOTENT = frozenset({StatusCode.DEADLINE_EXCEEDED})


def retryable(error: LumiError, idempotent: bool) -> bool:
    """Whether a failed attempt may be retried (only the code and idempotency decide)."""
    if isinstance(error, CircuitOpen):
        return False
    return error.code in RETRYABLE or (idempotent and error.code in RETRYABLE_IF_IDEMPOTENT)


class Resilience:
    """Client middleware applying the policies of one caller (a service, or None)."""

    def __init__(
        self,
        caller: str | None,
        policies: Policies,
        *,
        budget: RetryBudget | None = None,
        breakers: Breakers | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.caller = caller or "-"
        self.policies = policies
        b = policies.budget
        self.budget = budget or RetryBudget(b.ratio, reserve=b.reserve, max_tokens=b.max_tokens)
        self.metrics = metrics
        s = policies.breaker
        self.breakers = breakers or Breakers(
            lambda endpoint: CircuitBreaker(
                endpoint,
                failure_rate=s.failure_rate,
                window=s.window,
                min_calls=s.min_calls,
                reset_timeout=s.reset_timeout,
                max_reset_timeout=s.max_reset_timeout,
                on_change=self._breaker_changed,
            )
        )

    def _breaker_changed(self, endpoint: str, state: State) -> None:
        level = logging.INFO if state is State.CLOSED else logging.WARNING
        log.log(level, "circuit for %s is now %s", endpoint, state.name.lower().replace("_", "-"))
        if self.metrics is not None:
            self.metrics.circuit_state(endpoint, int(state))

    async def __call__(self, call: Call, next_handler: Handler) -> bytes:
        policy = self.policies.for_call(call.service, call.method, call.info)
        meta = call.metadata
        if policy.timeout is not None:
            local = time.time() + policy.timeout
            if meta.deadline is None or local < meta.deadline:
                meta.deadline = local
        idempotent = call.info is not None and call.info.idempotent
        breaker = self.breakers.get(call.service)
        self.budget.deposit()
        retry = 0
        while True:
            if not breaker.allow():
                if self.metrics is not None:
                    self.metrics.reject(self.caller, call.service, "circuit_open")
                breaker.check()  # raises CircuitOpen with the reason
            try:
                result = await self._attempt(call, next_handler)
            except LumiError as exc:
                error = exc
            except OSError as exc:  # a channel that did not translate its connection error
                error = Unavailable(f"cannot reach {call.service}: {exc}")
            else:
                breaker.success()
                return result
            breaker.record(error.code)
            if not retryable(error, idempotent) or retry + 1 >= policy.retry.attempts:
                raise error
            wait = retrying.delay(policy.retry, retry)
            remaining = meta.remaining()
            if remaining is not None and remaining <= wait:
                raise error
            if not self.budget.withdraw():
                if self.metrics is not None:
                    self.metrics.reject(self.caller, call.service, "retry_budget")
                raise error
            if self.metrics is not None:
                self.metrics.retry(self.caller, call.service, call.method, error.code.value)
            log.debug(
                "retrying %s.%s in %.3fs after %s (retry %d of %d)",
                call.service,
                call.method,
                wait,
                error.code.value,
                retry + 1,
                policy.retry.attempts - 1,
            )
            await asyncio.sleep(wait)
            retry += 1

    async def _attempt(self, call: Call, next_handler: Handler) -> bytes:
        remaining = call.metadata.remaining()
        if remaining is None:
            return await next_handler(call)
        if remaining <= 0:
            raise DeadlineExceeded(f"deadline passed before calling {call.service}.{call.method}")
        try:
            async with asyncio.timeout(remaining):
                return await next_handler(call)
        except TimeoutError:
            raise DeadlineExceeded(
                f"{call.service}.{call.method} did not answer before the deadline"
            ) from None
