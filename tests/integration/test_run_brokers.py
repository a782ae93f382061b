"""The example shop under ``lumi run`` on Kafka (tansu) and NATS JetStream, chosen by config."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from lumi.brokers import create_broker
from lumi.brokers.base import Delivery
from lumi.testing import wait_until
from tests.conftest import SHOP
from tests.engines.brokers import with_environment
from tests.integration.harness import LumiRun, copy_app, wait

pytestmark = pytest.mark.slow


def test_shop_runs_on_the_configured_broker(
    lumi_run: Callable[..., LumiRun], tmp_path: Path, network_broker: str
) -> None:
    """With only its config pointing at the broker, the shop's Orders process publishes
    Orders.placed there and the Mailer process handles it; the event is on the broker (a
    client of its own reads it) and no embedded log was created."""
    app = copy_app(SHOP, tmp_path / "shop")
    with_environment(app, "broker", network_broker)
    run = lumi_run(app, "--env", "broker")
    run.wait_ready(timeout=120)
    placed = run.post("Orders", "place", {"customer": "ada", "lines": [{"sku": "apple", "qty": 1}]})
    assert placed.status_code == 200, placed.text
    order_id = placed.json()["id"]
    sent = wait(
        lambda: run.post("Mailer", "sent", {"customer": "ada"}).json(),
        timeout=60,
        message=f"the confirmation\n{run.output}",
    )
    assert sent == [f"Dear ada, order {order_id} is confirmed."]
    assert not (app / ".lumi" / "events.db").exists()
    asyncio.run(_find_on_broker(network_broker, app, order_id))


async def _find_on_broker(url: str, app: Path, order_id: str) -> None:
    found: list[dict[str, object]] = []

    async def keep(delivery: Delivery) -> None:
        found.append(json.loads(delivery.envelope.data))

    async with create_broker(url, app_dir=app) as broker:
        await broker.subscribe("Orders.placed", "Audit", keep)
        await wait_until(
            lambda: any(e.get("order_id") == order_id for e in found), timeout=30,
            message="the order on the broker",
        )  # fmt: skip
