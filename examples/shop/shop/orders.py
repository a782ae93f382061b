"""Orders: places orders (reserving stock) and announces them with an event."""

from __future__ import annotations

import datetime
import uuid
from typing import Annotated

from pydantic import Field

import lumi
from shop.inventory import Inventory
from shop.models import Order, OrderLine, OrderPlaced


class Orders(lumi.Service):
    """Customer orders."""

    inventory: Inventory
    placed = lumi.event(OrderPlaced, doc="An order was placed.", key="customer")

    async def startup(self) -> None:
        self.orders: dict[str, Order] = {}

    @lumi.api
    async def place(
        self,
        customer: Annotated[str, Field(min_length=1, max_length=100)],
        lines: Annotated[list[OrderLine], Field(min_length=1, max_length=50)],
    ) -> Order:
        """Reserve every line and record the order; publishes ``placed``."""
        total = 0
        for line in lines:
            total += await self.inventory.reserve(sku=line.sku, qty=line.qty)
        order = Order(
            id=uuid.uuid4().hex[:12],
            customer=customer,
            lines=lines,
            total_cents=total,
            placed_at=datetime.datetime.now(datetime.UTC),
        )
        self.orders[order.id] = order
        await self.placed.publish(
            OrderPlaced(order_id=order.id, customer=customer, total_cents=total)
        )
        return order

    @lumi.api(idempotent=True)
    async def get(self, order_id: str) -> Order:
        """One order; NOT_FOUND if there is no such order."""
        order = self.orders.get(order_id)
        if order is None:
            raise lumi.NotFound(f"no order {order_id!r}")
        return order
