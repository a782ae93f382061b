"""Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter").

The n-th retry waits a uniformly random time in ``[0, min(max_backoff, backoff * multiplier**n)]``,
so many clients retrying at once spread out instead of arriving together.
"""

from __future__ import annotations

import random

from lumi.model.hints import Retry


def delay(policy: Retry, retry: int) -> float:
    """Seconds to wait before retry number ``retry`` (0 for the first retry)."""
    cap = min(policy.max_backoff, policy.backoff * policy.multiplier ** max(0, retry))
    return random.uniform(0.0, cap)


def ceiling(policy: Retry, retry: int) -> float:
    """The longest :func:`delay` can be for retry number ``retry``."""
    return float(min(policy.max_backoff, policy.backoff * policy.multiplier ** max(0, retry)))
