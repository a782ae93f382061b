"""Data shared by the shop's services."""

from __future__ import annotations

import datetime
from typing import Annotated

from pydantic import BaseModel, Field

# Constraints live in the types: a call that breaks one is refused with INVALID_ARGUMENT and
# pydantic's details before the method runs, and the interface's JSON Schema carries them.
Quantity = Annotated[int, Field(gt=0, le=1000, description="units, 1 to 1000")]
Sku = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[a-z0-9-]+$")]


class Product(BaseModel):
    sku: str
    name: str
    price_cents: int = Field(ge=0)


class OrderLine(BaseModel):
    sku: Sku
    qty: Quantity


class Order(BaseModel):
    id: str
    customer: str
    lines: list[OrderLine]
    total_cents: int
    placed_at: datetime.datetime


class OrderPlaced(BaseModel):
    order_id: str
    customer: str
    total_cents: int
