"""The client-side resilience middleware: deadlines, retries and the retry budget.

For each outbound call:

1. the deadline is the tightest of the inherited one, the method's timeout and the configured
   one (:mod:`lumi.runtime_services.resilience.policies`; every call has one, 30 s unless
   configured, so a hung dependency cannot hold a call forever); an attempt never outlives it,
   and no retry starts when its backoff would not end before it;
2. an attempt that fails with UNAVAILABLE or a connection error is retried; one that fails with
   DEADLINE_EXCEEDED is retried only for an idempotent method; nothing else is retried. The
   idempotency key stays the same on every attempt, so the callee can tell a retry from a new
   call (:mod:`lumi.runtime_services.resilience.idempotency`);
3. waits grow exponentially with full jitter
   (:mod:`lumi.retrying`);
4. each retry spends a token of the caller's
   :class:`~lumi.runtime_services.resilience.budget.RetryBudget`;
5. circuit breakers are the balancer's, below this layer, per endpoint and method
   (:mod:`lumi.runtime_services.resilience.balancer`): a call they refuse (CircuitOpen) is not
   retried, and counted in ``lumi_client_rejected_total{reason="circuit_open"}``.
"""

from __future__ import annotations

import asyncio
import logging
import time

from lumi import retrying
from lumi.model.errors import DeadlineExceeded, Lost, LumiError, StatusCode, Unavailable
from lumi.pipeline import Call, Handler
from lumi.pipeline.deadlines import until
from lumi.runtime_services.observability.metrics import UNKNOWN, Metrics
from lumi.runtime_services.resilience.breaker import CircuitOpen
from lumi.runtime_services.resilience.budget import RetryBudget
from lumi.runtime_services.resilience.policies import Policies

log = logging.getLogger("lumi.resilience")

RETRYABLE = frozenset({StatusCode.UNAVAILABLE})
RETRYABLE_IF_IDEMPOTENT = frozenset({StatusCode.DEADLINE_EXCEEDED})


def retryable(error: LumiError, idempotent: bool) -> bool:
    """Whether a failed attempt may be retried (only the code and idempotency decide)."""
    if isinstance(error, CircuitOpen):
        return False
    if isinstance(error, Lost):  # sent, then the connection broke: it may have run
        return idempotent
    return error.code in RETRYABLE or (idempotent and error.code in RETRYABLE_IF_IDEMPOTENT)


class Resilience:
    """Client middleware applying the policies of one caller (a service, or None)."""

    def __init__(
        self,
        caller: str | None,
        policies: Policies,
        *,
        budget: RetryBudget | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.caller = caller or "-"
        self.policies = policies
        b = policies.budget
        self.budget = budget or RetryBudget(b.ratio, reserve=b.reserve, max_tokens=b.max_tokens)
        self.metrics = metrics

    async def __call__(self, call: Call, next_handler: Handler) -> bytes:
        policy = self.policies.for_call(call.service, call.method, call.info)
        meta = call.metadata
        if policy.timeout is not None:
            local = time.time() + policy.timeout
            if meta.deadline is None or local < meta.deadline:
                meta.deadline = local
        idempotent = call.info is not None and call.info.idempotent
        self.budget.deposit()
        retry = 0
        while True:
            try:
                # One attempt, inline (a coroutine less per call): never past the deadline.
                deadline = meta.deadline
                if deadline is None:
                    return await next_handler(call)
                if deadline <= time.time():
                    raise DeadlineExceeded(
                        f"deadline passed before calling {call.service}.{call.method}"
                    )
                try:
                    with until(deadline):
                        return await next_handler(call)
                except TimeoutError:  # ours, or a channel's own: the answer did not come in time
                    raise DeadlineExceeded(
                        f"{call.service}.{call.method} did not answer before the deadline"
                    ) from None
            except CircuitOpen:
                if self.metrics is not None:
                    self.metrics.reject(self.caller, call.service, "circuit_open")
                raise
            except LumiError as exc:
                error = exc
            except OSError as exc:  # a channel that did not translate its connection error
                error = Unavailable(f"cannot reach {call.service}: {exc}")
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
                method = call.method if call.info is not None else UNKNOWN
                self.metrics.retry(self.caller, call.service, method, error.code.value)
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
