"""Storefront: shows stock levels, asking the shop's Inventory over HTTP."""

from __future__ import annotations

from inventory_client import AsyncInventoryClient  # installed by `lumi install`

import lumi


class Storefront(lumi.Service):
    """What the shop has in stock, for the web page."""

    @lumi.api(idempotent=True)
    async def in_stock(self, inventory_url: str, sku: str) -> bool:
        """Whether ``sku`` is in stock at the Inventory replica at ``inventory_url``."""
        async with AsyncInventoryClient(inventory_url) as inventory:
            return await inventory.available(sku=sku) > 0
