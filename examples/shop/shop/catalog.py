"""Catalog: what the shop sells, and at what price."""

from __future__ import annotations

import lumi
from shop.models import Product, Sku

PRODUCTS = {
    "apple": Product(sku="apple", name="Apple", price_cents=50),
    "pear": Product(sku="pear", name="Pear", price_cents=75),
    "melon": Product(sku="melon", name="Melon", price_cents=300),
}


class Catalog(lumi.Service):
    """The products on sale."""

    @lumi.api(idempotent=True)
    def product(self, sku: Sku) -> Product:
        """One product by SKU; NOT_FOUND for an unknown SKU."""
        try:
            return PRODUCTS[sku]
        except KeyError:
            raise lumi.NotFound(f"no product {sku!r}") from None

    @lumi.api(idempotent=True)
    def products(self) -> list[Product]:
        """Every product, by SKU."""
        return [PRODUCTS[sku] for sku in sorted(PRODUCTS)]
