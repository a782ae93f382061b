"""Front fans one request out into many concurrent calls to Back, for the test that a channel
carries them all with bounded connections (tests/integration/test_hop_concurrency.py)."""

from __future__ import annotations

import asyncio
import os

import pydantic

import lumi

# Back holds calls until this many are in flight at once (or HOLD_SECONDS pass), so the test
# sees whether the caller really keeps that many in flight.
TARGET = int(os.environ.get("FANOUT_TARGET", "64"))
HOLD_SECONDS = 10.0


class Stats(pydantic.BaseModel):
    peak: int
    released_at_target: bool


class Back(lumi.Service):
    async def startup(self) -> None:
        self.in_flight = 0
        self.peak = 0
        self.full = asyncio.Event()

    @lumi.api(idempotent=True)
    async def hold(self, n: int) -> int:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        if self.in_flight >= TARGET:
            self.full.set()
        try:
            async with asyncio.timeout(HOLD_SECONDS):
                await self.full.wait()
        except TimeoutError:
            pass
        finally:
            self.in_flight -= 1
        return n

    @lumi.api(idempotent=True)
    async def stats(self) -> Stats:
        return Stats(peak=self.peak, released_at_target=self.full.is_set())


class Front(lumi.Service):
    back: Back

    @lumi.api
    async def fan(self, calls: int) -> list[int]:
        return list(await asyncio.gather(*(self.back.hold(n=n) for n in range(calls))))

    @lumi.api(idempotent=True)
    async def back_stats(self) -> Stats:
        return await self.back.stats()
