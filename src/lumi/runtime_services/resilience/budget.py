"""A retry budget: a token bucket that keeps retries to a fraction of calls (Finagle, gRPC).

Every first attempt deposits ``ratio`` tokens (at most ``max_tokens`` are kept); every retry
withdraws one whole token and is refused when there is none. Over any run, retries are at most
``ratio * calls`` plus the initial ``reserve``, so a failing dependency sees at most
``1 + ratio`` times the load its callers generate, however many attempts each call may make.
"""

from __future__ import annotations


class RetryBudget:
    """Retries allowed as a fraction of calls (used from the event loop: no lock)."""

    def __init__(self, ratio: float = 0.2, *, reserve: float = 10.0, max_tokens: float = 100.0):
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"retry budget ratio must be between 0 and 1, not {ratio!r}")
        self.ratio = ratio
        self.max_tokens = max(max_tokens, reserve, 1.0)
        self._tokens = float(reserve)
        self.calls = 0
        self.retries = 0
        self.refused = 0

    @property
    def tokens(self) -> float:
        return self._tokens

    def deposit(self) -> None:
        """Record a first attempt."""
        self.calls += 1
        tokens = self._tokens + self.ratio
        self._tokens = tokens if tokens < self.max_tokens else self.max_tokens

    def withdraw(self) -> bool:
        """Ask for one retry; False when the budget is spent."""
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            self.retries += 1
            return True
        self.refused += 1
        return False
