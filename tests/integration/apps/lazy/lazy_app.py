"""A scale-to-zero test app: Lazy (runtime = "function") subscribes to Ticker's event."""

from __future__ import annotations

import asyncio
import os

from pydantic import BaseModel

import lumi


class Ticked(BaseModel):
    n: int


class Ticker(lumi.Service):
    """An ordinary process that publishes."""

    ticked = lumi.event(Ticked)

    @lumi.api
    async def tick(self, n: int) -> None:
        await self.ticked.publish(Ticked(n=n))


class Lazy(lumi.Service):
    """Runs only while calls or events need it."""

    @lumi.api(idempotent=True)
    async def whoami(self) -> int:
        return os.getpid()

    @lumi.api
    async def slow(self, seconds: float) -> int:
        await asyncio.sleep(seconds)
        return os.getpid()

    @lumi.subscribe(Ticker.ticked)
    async def on_ticked(self, event: Ticked) -> None:
        with open(os.environ["LAZY_MARKS"], "a") as marks:  # noqa: ASYNC230 - a tiny write
            marks.write(f"{event.n} {os.getpid()}\n")
