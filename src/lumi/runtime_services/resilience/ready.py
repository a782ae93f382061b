"""Readiness waits: start-up waits for what a service needs instead of failing.

``await wait_ready(check, "Inventory")`` calls ``check`` until it reports ready (returns True or
None without raising), sleeping with exponential backoff and full jitter in between, and logs one
clear line per failed attempt. After ``timeout`` seconds it raises
:class:`~lumi.model.errors.AppError` with the last reason.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable

from lumi.model.errors import AppError
from lumi.model.hints import Retry
from lumi.runtime_services.resilience import backoff

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
        ceiling = backoff.ceiling(policy, attempt - 1)
        delay = max(ceiling / 10, backoff.delay(policy, attempt - 1))
        if timeout is not None and waited + delay > timeout:
            raise AppError(
                f"{name} was not ready after {waited:.1f}s ({attempt} attempts): {reason}"
            )
        out.info(
            "waiting for %s (attempt %d, %.1fs so far): %s; next try in %.2fs",
            name,
            attempt,
            waited,
            reason,
            delay,
        )
        await asyncio.sleep(delay)
