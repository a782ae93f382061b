"""Data shared by the shop's services."""

from __future__ import annotations

import datetime

from pydantic import BaseModel, Field


class Product(BaseModel):
    sku: str
    name: str
    price_cents: int = Field(ge=0)


class OrderLine(BaseModel):
    sku: str
    qty: int = Field(gt=0)


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
