"""Mailer: writes a confirmation for every placed order."""

from __future__ import annotations

import logging

import lumi
from shop.models import OrderPlaced
from shop.orders import Orders

log = logging.getLogger(__name__)


class Mailer(lumi.Service):
    """Sends order confirmations (here: keeps them, so they can be listed)."""

    async def startup(self) -> None:
        self.outbox: list[str] = []

    @lumi.subscribe(Orders.placed)
    async def on_placed(self, event: OrderPlaced) -> None:
        message = f"Dear {event.customer}, order {event.order_id} is confirmed."
        self.outbox.append(message)
        log.info("confirmation sent for order %s", event.order_id)

    @lumi.api(idempotent=True)
    async def sent(self, customer: str | None = None) -> list[str]:
        """The confirmations sent so far (to ``customer`` only, if given)."""
        if customer is None:
            return list(self.outbox)
        return [m for m in self.outbox if m.startswith(f"Dear {customer},")]
