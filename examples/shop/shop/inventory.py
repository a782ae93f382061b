"""Inventory: stock levels; reserving stock prices the goods through the Catalog."""

from __future__ import annotations

import lumi
from shop.catalog import Catalog
from shop.models import Quantity, Sku


class Inventory(lumi.Service):
    """Stock per SKU."""

    catalog: Catalog

    async def startup(self) -> None:
        self.stock = {"apple": 10, "pear": 5, "melon": 1}

    @lumi.api(idempotent=True)
    async def available(self, sku: Sku) -> int:
        """Units of ``sku`` in stock."""
        await self.catalog.product(sku=sku)  # NOT_FOUND for an unknown SKU
        return self.stock.get(sku, 0)

    @lumi.api
    async def reserve(self, sku: Sku, qty: Quantity) -> int:
        """Take ``qty`` units out of stock; returns their price in cents.

        FAILED_PRECONDITION when there is not enough stock.
        """
        product = await self.catalog.product(sku=sku)
        have = self.stock.get(sku, 0)
        if qty > have:
            raise lumi.FailedPrecondition(
                f"only {have} {sku} left, cannot reserve {qty}", {"sku": sku, "available": have}
            )
        self.stock[sku] = have - qty
        return product.price_cents * qty
