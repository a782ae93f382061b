"""Retry hints declared on methods; plain data, read by the resilience layer."""

from __future__ import annotations

from typing import Any

import pydantic


class Retry(pydantic.BaseModel):
    """How a client retries a call: attempts in all, with exponential backoff and full jitter.

    ``@lumi.api(retry=Retry(attempts=5))``; ``retry=3`` is short for ``Retry(attempts=3)`` and
    ``retry=False`` for ``Retry(attempts=1)``.
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    attempts: int = pydantic.Field(default=3, ge=1, le=100)
    backoff: float = pydantic.Field(default=0.05, gt=0, description="first delay, seconds")
    max_backoff: float = pydantic.Field(default=2.0, gt=0, description="delay cap, seconds")
    multiplier: float = pydantic.Field(default=2.0, ge=1.0)

    @classmethod
    def coerce(cls, value: Any) -> Retry | None:
        if value is None or isinstance(value, Retry):
            return value
        if value is False:
            return cls(attempts=1)
        if value is True:
            return cls()
        if isinstance(value, int):
            return cls(attempts=value)
        if isinstance(value, dict):
            return cls(**value)
        raise TypeError(f"retry must be a lumi.Retry, an int, a bool or None, not {value!r}")
