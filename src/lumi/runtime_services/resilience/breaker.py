"""Circuit breakers, one per endpoint and method: closed → open → half-open → closed.

* **closed**: calls flow; the outcomes of the last ``window`` calls are kept, and when at least
  ``min_calls`` of them are known and ``failure_rate`` of them failed, the circuit opens (a rate,
  not a streak: the few calls in flight when a dependency restarts do not trip it; a dependency
  that keeps failing does).
* **open**: calls fail at once with UNAVAILABLE (:class:`CircuitOpen`) for ``reset_timeout``
  seconds, so a failing dependency is not hammered.
* **half-open**: up to ``half_open_calls`` trial calls go through; a success closes the circuit,
  a failure opens it again (the next wait doubles, up to ``max_reset_timeout``).

Only the callee's failures count: UNAVAILABLE, INTERNAL, UNKNOWN, DATA_LOSS, and
DEADLINE_EXCEEDED when the attempt had a fair chance — at least ``min_deadline`` seconds and
four times the callee's usual latency (an average of recent answers). A deadline a few
milliseconds away is the caller's choice, not the callee's fault, and counts for nothing; so do
the caller's own errors (INVALID_ARGUMENT and every other code: they are answers). A breaker
covers one method of one endpoint, so a method that keeps failing does not stop calls to the
healthy methods next to it.
"""

from __future__ import annotations

import collections
import enum
import time
from collections.abc import Callable

from lumi.model.errors import StatusCode, Unavailable

FAILURE_CODES = frozenset(
    {
        StatusCode.UNAVAILABLE,
        StatusCode.DEADLINE_EXCEEDED,
        StatusCode.INTERNAL,
        StatusCode.UNKNOWN,
        StatusCode.DATA_LOSS,
    }
)


class State(enum.IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


# Enum members read through a descriptor in Python 3.11 (~0.25 µs each); the breaker is read
# on every call, twice, so its hot paths compare against these.
_CLOSED, _HALF_OPEN, _OPEN = State.CLOSED, State.HALF_OPEN, State.OPEN


class CircuitOpen(Unavailable):
    """Refused locally because the endpoint's circuit is open (never retried)."""


_LATENCY_WEIGHT = 0.1  # of the newest answer in the average latency
_FAIR_CHANCE = 4.0  # times the usual latency an attempt must have had for a timeout to count


class CircuitBreaker:
    """The breaker of one method (``service.method``) of one endpoint."""

    def __init__(
        self,
        endpoint: str,
        service: str = "",
        method: str = "",
        *,
        min_deadline: float = 0.1,
        failure_rate: float = 0.5,
        window: int = 20,
        min_calls: int = 10,
        reset_timeout: float = 1.0,
        max_reset_timeout: float = 10.0,
        half_open_calls: int = 1,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[CircuitBreaker, State], None] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.service = service
        self.method = method
        self.min_deadline = min_deadline
        self.latency: float | None = None  # average seconds of recent answers
        self.failure_rate = failure_rate
        self.min_calls = max(1, min_calls)
        self._outcomes: collections.deque[bool] = collections.deque(maxlen=max(window, 1))
        self.base_reset = reset_timeout
        self.max_reset = max_reset_timeout
        self.half_open_calls = half_open_calls
        self._clock = clock
        self._on_change = on_change
        self.state = State.CLOSED
        self.failures = 0
        self._reset_timeout = reset_timeout
        self._opened_at = 0.0
        self._trials = 0

    def allow(self) -> bool:
        """May a call go to this endpoint now? (Counts a half-open trial when it may.)"""
        if self.state is _CLOSED:
            return True
        if self.state is _OPEN:
            if self._clock() - self._opened_at < self._reset_timeout:
                return False
            self._set(_HALF_OPEN)
            self._trials = 0
        if self._trials < self.half_open_calls:
            self._trials += 1
            return True
        return False

    def check(self) -> None:
        """Raise :class:`CircuitOpen` unless a call may go now."""
        if not self.allow():
            raise CircuitOpen(
                f"circuit open for {self.name} ({self.failures} of the last "
                f"{len(self._outcomes)} calls failed); next trial in {self.retry_in():.1f}s",
                {
                    "endpoint": self.endpoint,
                    "method": self.method,
                    "state": self.state.name.lower(),
                },
            )

    @property
    def name(self) -> str:
        what = f"{self.service}.{self.method}" if self.method else self.service
        return f"{what} at {self.endpoint}" if what else self.endpoint

    def retry_in(self) -> float:
        if self.state is not State.OPEN:
            return 0.0
        return max(0.0, self._reset_timeout - (self._clock() - self._opened_at))

    def success(self) -> None:
        if self.state is not _CLOSED:
            self._reset_timeout = self.base_reset
            self._outcomes.clear()
            self.failures = 0
            self._set(_CLOSED)
        else:
            self._push(False)

    def failure(self) -> None:
        if self.state is _HALF_OPEN:
            self._reset_timeout = min(self.max_reset, self._reset_timeout * 2)
            self._open()
        elif self.state is _CLOSED:
            self._push(True)
            outcomes = len(self._outcomes)
            if outcomes >= self.min_calls and self.failures >= self.failure_rate * outcomes:
                self._open()

    def _push(self, failed: bool) -> None:
        outcomes = self._outcomes
        if len(outcomes) == outcomes.maxlen and outcomes[0]:
            self.failures -= 1
        outcomes.append(failed)
        if failed:
            self.failures += 1

    def release(self) -> None:
        """A call allowed by :meth:`allow` ended with no verdict (it was cancelled): give its
        half-open trial back, so the breaker cannot wait forever for it."""
        if self.state is _HALF_OPEN and self._trials > 0:
            self._trials -= 1

    def record(
        self,
        code: StatusCode | None,
        *,
        budget: float | None = None,
        elapsed: float | None = None,
    ) -> None:
        """Record an outcome: None (success) or the error code the call ended with.

        ``budget`` is the time the attempt had (None: no deadline), ``elapsed`` how long it
        took; a DEADLINE_EXCEEDED counts only if the budget was a fair chance (module docs).
        """
        if code is None or code not in FAILURE_CODES:
            if elapsed is not None:
                last = self.latency
                self.latency = (
                    elapsed if last is None else last + _LATENCY_WEIGHT * (elapsed - last)
                )
            self.success()
        elif code is StatusCode.DEADLINE_EXCEEDED and budget is not None and not self.fair(budget):
            self.release()  # the caller's own deadline: no verdict on the callee
        else:
            self.failure()

    def fair(self, budget: float) -> bool:
        """Was ``budget`` seconds a fair chance for this method to answer?"""
        usual = self.latency or 0.0
        return budget >= self.min_deadline and budget >= _FAIR_CHANCE * usual

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._set(State.OPEN)

    def _set(self, state: State) -> None:
        if state is not self.state:
            self.state = state
            if self._on_change is not None:
                self._on_change(self, state)


class Breakers:
    """The breakers of one caller, one per (endpoint, service, method), made on first use.

    The balancer names methods only from the caller's copy of the callee's interface (others
    share one ``"*"`` breaker), so the number of breakers is bounded by what the caller knows.
    """

    def __init__(self, make: Callable[[str, str, str], CircuitBreaker] = CircuitBreaker) -> None:
        self._make = make
        self._by_key: dict[tuple[str, str, str], CircuitBreaker] = {}

    def get(self, endpoint: str, service: str = "", method: str = "") -> CircuitBreaker:
        key = (endpoint, service, method)
        breaker = self._by_key.get(key)
        if breaker is None:
            breaker = self._by_key[key] = self._make(endpoint, service, method)
        return breaker

    def states(self) -> dict[str, str]:
        return {b.name: b.state.name.lower() for b in self._by_key.values()}
