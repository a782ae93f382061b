"""Resilience policies: which timeout and retry apply to one outbound call.

Most specific wins: the caller's configuration for that capability
(``[services.Orders.capabilities.Inventory]``), then the method's own hints
(``@lumi.api(timeout=, retry=)``, carried in its interface), then the app's ``[resilience]``
defaults. Every outbound call has a deadline: without one configured it is
:data:`DEFAULT_TIMEOUT` seconds, so a dependency that hangs cannot hold calls forever.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from lumi.model.hints import Retry
from lumi.model.interface import MethodInfo

DEFAULT_TIMEOUT = 30.0


@dataclasses.dataclass(frozen=True, slots=True)
class CallPolicy:
    """The timeout (None: only an inherited deadline) and retry of one call."""

    retry: Retry
    timeout: float | None = None


@dataclasses.dataclass(frozen=True)
class Override:
    """A per-capability setting from configuration; None keeps the next level's value."""

    retry: Retry | None = None
    timeout: float | None = None


@dataclasses.dataclass(frozen=True)
class BreakerSettings:
    min_deadline: float = 0.1  # a timeout counts only if the attempt had this long (and more)
    failure_rate: float = 0.5
    window: int = 20
    min_calls: int = 10
    reset_timeout: float = 1.0
    max_reset_timeout: float = 10.0


@dataclasses.dataclass(frozen=True)
class BudgetSettings:
    ratio: float = 0.2
    reserve: float = 10.0
    max_tokens: float = 100.0


class Policies:
    """Resolves the :class:`CallPolicy` of each (target service, method)."""

    def __init__(
        self,
        *,
        retry: Retry | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        capabilities: Mapping[str, Override] | None = None,
        breaker: BreakerSettings | None = None,
        budget: BudgetSettings | None = None,
    ) -> None:
        self.default = CallPolicy(retry or Retry(), timeout)
        self.capabilities = dict(capabilities or {})
        self.breaker = breaker or BreakerSettings()
        self.budget = budget or BudgetSettings()
        self._cache: dict[tuple[str, str, int], CallPolicy] = {}

    def for_call(self, service: str, method: str, info: MethodInfo | None) -> CallPolicy:
        key = (service, method, id(info))
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self._resolve(service, info)
        return found

    def _resolve(self, service: str, info: MethodInfo | None) -> CallPolicy:
        retry, timeout = self.default.retry, self.default.timeout
        if info is not None:
            retry = info.retry or retry
            timeout = info.timeout if info.timeout is not None else timeout
        override = self.capabilities.get(service)
        if override is not None:
            retry = override.retry or retry
            timeout = override.timeout if override.timeout is not None else timeout
        return CallPolicy(retry, timeout)
