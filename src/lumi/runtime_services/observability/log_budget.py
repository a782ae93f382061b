"""A budget of log lines: a burst, then a steady rate, with the lines left out counted.

Every failed call writes an access-log line, so a client sending thousands of bad requests a
second would otherwise make the replica write thousands of lines a second — disk, the
terminal of ``lumi run``, and event-loop time spent on formatting, all driven from outside.
Lines past the budget are dropped and counted; the next line that gets through says how many
were left out. Metrics still count every call.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class LogBudget:
    """At most ``rate`` lines a second on average, ``burst`` at once (a token bucket)."""

    def __init__(
        self, rate: float = 20.0, burst: float = 100.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._at = clock()
        self.dropped = 0  # since the last line that got through

    def allow(self) -> bool:
        """May a line be written now? (If not, it is counted as dropped.)"""
        now = self._clock()
        tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return True
        self._tokens = tokens
        self.dropped += 1
        return False

    def take_dropped(self) -> int:
        """How many lines were dropped since the last call (and start counting again)."""
        dropped, self.dropped = self.dropped, 0
        return dropped
