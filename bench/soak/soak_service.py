"""The service bench/soak_bench.py drives: small reads and writes, and an answer of any size."""

from __future__ import annotations

import lumi


class Store(lumi.Service):
    """A key-value store."""

    async def startup(self) -> None:
        self.values: dict[str, float] = {}

    @lumi.api
    async def put(self, key: str, value: float) -> float:
        self.values[key] = value
        return value

    @lumi.api(idempotent=True)
    async def get(self, key: str) -> float | None:
        return self.values.get(key)

    @lumi.api(idempotent=True)
    async def total(self, values: list[int]) -> int:
        return sum(values)

    @lumi.api(idempotent=True)
    async def pad(self, size: int) -> str:
        return "x" * size
