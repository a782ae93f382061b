"""Three services in a chain (Gateway → Orders → Inventory) plus a subscriber (Mailer), for the
runtime-services tests: every handler logs, Inventory can fail or be slow on purpose."""

from __future__ import annotations

import asyncio
import os

import pydantic

import lumi

log = lumi.get_logger("chain")


class Placed(pydantic.BaseModel):
    order: str


class Inventory(lumi.Service):
    async def startup(self) -> None:
        self.broken_attempts = 0

    @lumi.api(idempotent=True)
    async def reserve(self, sku: str) -> bool:
        log.info("reserving", sku=sku)
        return True

    @lumi.api(idempotent=True)
    async def pid(self) -> int:
        return os.getpid()

    @lumi.api
    async def broken(self) -> bool:
        self.broken_attempts += 1
        raise lumi.Unavailable("inventory is broken on purpose")

    @lumi.api(idempotent=True)
    async def attempts(self) -> int:
        return self.broken_attempts

    @lumi.api
    async def work(self, seconds: float) -> str:
        log.info("work started", seconds=seconds)
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            log.info("work cancelled at the deadline")
            raise
        log.info("work finished")
        return "done"

    @lumi.api(idempotent=True)
    async def deadline(self) -> float | None:
        ctx = lumi.context()
        return None if ctx is None else ctx.deadline


class Orders(lumi.Service):
    inventory: Inventory
    placed = lumi.event(Placed)

    @lumi.api
    async def place(self, sku: str) -> str:
        log.info("placing", sku=sku)
        await self.inventory.reserve(sku=sku)
        await self.placed.publish(Placed(order=f"o-{sku}"))
        return f"o-{sku}"

    @lumi.api(idempotent=True)
    async def inventory_pid(self) -> int:
        return await self.inventory.pid()

    @lumi.api
    async def broken(self) -> bool:
        return await self.inventory.broken()

    @lumi.api
    async def work(self, seconds: float) -> str:
        return await self.inventory.work(seconds=seconds)

    @lumi.api(idempotent=True)
    async def deadline(self) -> float | None:
        return await self.inventory.deadline()


class Gateway(lumi.Service):
    orders: Orders

    @lumi.api
    async def buy(self, sku: str) -> str:
        log.info("buying", sku=sku)
        return await self.orders.place(sku=sku)

    @lumi.api
    async def work(self, seconds: float) -> str:
        return await self.orders.work(seconds=seconds)

    @lumi.api(idempotent=True)
    async def deadline(self) -> float | None:
        return await self.orders.deadline()


class Mailer(lumi.Service):
    async def startup(self) -> None:
        self.sent: list[str] = []

    @lumi.subscribe(Orders.placed)
    async def on_placed(self, event: Placed) -> None:
        log.info("mailing", order=event.order)
        self.sent.append(event.order)
