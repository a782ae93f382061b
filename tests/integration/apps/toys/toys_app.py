"""A small app for the seam proof: a call chain and an event flow."""

from __future__ import annotations

import pydantic

import lumi


class Added(pydantic.BaseModel):
    amount: int


class Counter(lumi.Service):
    added = lumi.event(Added)

    @lumi.api
    async def add(self, amount: int) -> int:
        await self.added.publish(Added(amount=amount))
        return amount


class Tally(lumi.Service):
    async def startup(self) -> None:
        self.count = 0

    @lumi.subscribe(Counter.added)
    async def on_added(self, event: Added) -> None:
        self.count += event.amount

    @lumi.api(idempotent=True)
    async def total(self) -> int:
        return self.count


class Front(lumi.Service):
    counter: Counter

    @lumi.api
    async def add_twice(self, amount: int) -> int:
        return await self.counter.add(amount=amount) + await self.counter.add(amount=amount)
