"""Shared pieces for the runtime-services tests: a small chain of services and log capture."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import pydantic

import lumi
from lumi.runtime_services.observability.logs import configure_logging, get_logger, reset_logging

log = get_logger("chain")
stdlog = logging.getLogger("chain.std")


class Placed(pydantic.BaseModel):
    order: str


class Inventory(lumi.Service):
    async def startup(self) -> None:
        self.reserved: list[str] = []

    @lumi.api(idempotent=True)
    async def reserve(self, sku: str) -> bool:
        log.info("reserving", sku=sku)
        self.reserved.append(sku)
        return True


class Orders(lumi.Service):
    inventory: Inventory
    placed = lumi.event(Placed)

    @lumi.api
    async def place(self, sku: str, card: Annotated[str, lumi.Sensitive]) -> str:
        stdlog.info("placing an order", extra={"sku": sku, "card": card})
        await self.inventory.reserve(sku=sku)
        await self.placed.publish(Placed(order=f"o-{sku}"))
        return f"o-{sku}"


class Gateway(lumi.Service):
    orders: Orders

    @lumi.api
    async def buy(self, sku: str, password: str) -> str:
        log.info("buying", sku=sku, password=password)
        return await self.orders.place(sku=sku, card="4111-1111")


class Mailer(lumi.Service):
    async def startup(self) -> None:
        self.sent: list[str] = []

    @lumi.subscribe(Orders.placed)
    async def on_placed(self, event: Placed) -> None:
        log.info("mailing", order=event.order)
        self.sent.append(event.order)


CHAIN = [Inventory, Orders, Gateway, Mailer]


class Lines(list[dict[str, Any]]):
    """JSON log lines captured from the logging setup."""

    def __init__(self, buffer: io.StringIO) -> None:
        super().__init__()
        self.buffer = buffer

    def refresh(self) -> Lines:
        self.clear()
        self.extend(json.loads(line) for line in self.buffer.getvalue().splitlines() if line)
        return self

    def with_msg(self, msg: str) -> list[dict[str, Any]]:
        return [line for line in self.refresh() if line.get("msg") == msg]


@contextmanager
def captured_logs(level: str = "INFO", **options: Any) -> Iterator[Lines]:
    """Configure Lumi's logging into a buffer (JSON lines); undo it afterwards."""
    buffer = io.StringIO()
    configure_logging(stream=buffer, level=level, json=True, **options)
    try:
        yield Lines(buffer)
    finally:
        reset_logging()
