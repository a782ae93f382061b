"""Services for the hardening tests: every method reaches one limit or one failure."""

from __future__ import annotations

import asyncio
import datetime
import time

import lumi


class Store(lumi.Service):
    """Keeps values and counts how often its non-idempotent methods really ran."""

    async def startup(self) -> None:
        self.values: dict[str, float] = {}
        self.ran = 0
        self.counter = 0

    @lumi.api
    async def put(self, key: str, value: float) -> float:
        self.ran += 1
        self.values[key] = value
        return value

    @lumi.api(idempotent=True)
    async def get(self, key: str) -> float | None:
        return self.values.get(key)

    @lumi.api(idempotent=True)
    async def runs(self) -> int:
        return self.ran

    @lumi.api
    async def next(self) -> int:
        self.counter += 1
        return self.counter

    @lumi.api
    async def blob(self, size: int) -> str:
        self.ran += 1
        return "x" * size

    @lumi.api(idempotent=True)
    async def pad(self, size: int) -> str:
        return "x" * size

    @lumi.api(idempotent=True)
    async def total(self, values: list[int]) -> int:
        return sum(values)

    @lumi.api(idempotent=True)
    async def count(self, n: int) -> int:
        return n

    @lumi.api(idempotent=True)
    async def when(self, at: datetime.datetime) -> str:
        return at.isoformat()

    @lumi.api(idempotent=True)
    async def sleep(self, seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds

    @lumi.api
    def sync_sleep(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    @lumi.api
    async def boom(self) -> None:
        raise ValueError("the password is hunter2")

    @lumi.api(idempotent=True)
    async def broken(self) -> None:
        raise RuntimeError("always broken")

    @lumi.api(idempotent=True)
    async def deadline(self) -> float | None:
        ctx = lumi.context()
        return None if ctx is None else ctx.deadline


class Front(lumi.Service):
    """Calls the Store: one hop between processes."""

    store: Store

    @lumi.api(idempotent=True)
    async def relay(self, key: str) -> float | None:
        return await self.store.get(key=key)

    @lumi.api
    async def put(self, key: str, value: float) -> float:
        return await self.store.put(key=key, value=value)

    @lumi.api(idempotent=True)
    async def relay_sleep(self, seconds: float) -> float:
        return await self.store.sleep(seconds=seconds)

    @lumi.api(idempotent=True)
    async def relay_broken(self) -> None:
        await self.store.broken()

    @lumi.api(idempotent=True)
    async def deadline(self) -> float | None:
        return await self.store.deadline()
