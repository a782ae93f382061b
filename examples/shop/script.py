"""The shop in one process, in five lines (run: python examples/shop/script.py)."""

import asyncio

from shop import catalog, inventory, mailer, orders

import lumi


async def main() -> None:
    async with lumi.App(
        [catalog.Catalog, inventory.Inventory, orders.Orders, mailer.Mailer]
    ) as app:
        print(
            await app.client(orders.Orders).place(
                customer="ada", lines=[{"sku": "apple", "qty": 2}]
            )
        )


asyncio.run(main())
