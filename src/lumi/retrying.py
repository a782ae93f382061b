"""Waiting with backoff: the primitives every part of Lumi retries with.

* :func:`delay` / :func:`ceiling` — exponential backoff with full jitter (AWS Architecture
  Blog, "Exponential Backoff And Jitter"): the n-th retry waits a uniformly random time in
  ``[0, min(max_backoff, backoff * multiplier**n)]``, so many clients retrying at once spread
  out instead of arriving together.
* :func:`wait_ready` — start-up waits for what a service needs instead of failing:
  ``await wait_ready(check, "Inventory")`` calls ``check`` until it reports ready (returns True
  or None without raising), sleeping with backoff in between, and logs one clear line per failed
  attempt. After ``timeout`` seconds it raises :class:`~lumi.model.errors.AppError` with the
  last reason.
* :func:`while_locked` — SQLite's "database is locked", waited out in a thread with short
  sleeps (the embedded event log and the span store, which many replicas open at once).

It sits below every axis, so a broker or transport connecting to its server retries the same
way a service waits for its capabilities (the resilience runtime service builds on it).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from lumi.model.errors import AppError
from lumi.model.hints import Retry


def delay(policy: Retry, retry: int) -> float:
    """Seconds to wait before retry number ``retry`` (0 for the first retry)."""
    cap = min(policy.max_backoff, policy.backoff * policy.multiplier ** max(0, retry))
    return random.uniform(0.0, cap)


def ceiling(policy: Retry, retry: int) -> float:
    """The longest :func:`delay` can be for retry number ``retry``."""
    return float(min(policy.max_backoff, policy.backoff * policy.multiplier ** max(0, retry)))


log = logging.getLogger("lumi.ready")

READY_BACKOFF = Retry(attempts=100, backoff=0.05, max_backoff=2.0, multiplier=2.0)


async def wait_ready(
    check: Callable[[], object],
    name: str,
    *,
    timeout: float | None = 60.0,
    policy: Retry = READY_BACKOFF,
    logger: logging.Logger | None = None,
) -> int:
    """Wait until ``check`` says ``name`` is ready; returns the number of attempts it took."""
    out = logger or log
    started = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result is None or result is True:
                if attempt > 1:
                    out.info("%s is ready after %d attempts", name, attempt)
                return attempt
            reason = "not ready yet" if result is False else f"not ready: {result!r}"
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
        waited = time.monotonic() - started
        # Grow the delay's ceiling, but never wait less than a tenth of it: polling a dependency
        # that is still starting many times a millisecond helps nobody.
        cap = ceiling(policy, attempt - 1)
        pause = max(cap / 10, delay(policy, attempt - 1))
        if timeout is not None and waited + pause > timeout:
            raise AppError(
                f"{name} was not ready after {waited:.1f}s ({attempt} attempts): {reason}"
            )
        out.info(
            "waiting for %s (attempt %d, %.1fs so far): %s; next try in %.2fs",
            name,
            attempt,
            waited,
            reason,
            pause,
        )
        await asyncio.sleep(pause)


T = TypeVar("T")
_LOCKED = (5, 6)  # SQLite's primary result codes SQLITE_BUSY and SQLITE_LOCKED


def while_locked(fn: Callable[[], T], timeout: float) -> T:
    """``fn()``, tried again while SQLite says the database is locked by another connection
    (blocking: call it in a thread). Extended codes count by their primary one: a connection
    opening a WAL log another one is recovering gets SQLITE_BUSY_RECOVERY, and switching a new
    file to WAL mode returns SQLITE_BUSY without calling the busy handler — both happen when
    every replica opens the same file as it starts. Tries again after 50 µs, doubling up to
    2 ms; raises the error once ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    pause = 0.00005
    while True:
        try:
            return fn()
        except Exception as exc:  # sqlite3.OperationalError; sqlite3 is not imported here
            code = getattr(exc, "sqlite_errorcode", None)
            if code is None or code & 0xFF not in _LOCKED or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.002)
