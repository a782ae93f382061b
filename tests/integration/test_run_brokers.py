"""The example shop under ``lumi run`` on Kafka (tansu) and NATS JetStream, chosen by config."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from lumi.brokers import create_broker
from lumi.brokers.base import Delivery
from lumi.testing import wait_until
from tests.conftest import SHOP
from tests.engines.kafka import Tansu
from tests.engines.nats import NatsServer
from tests.integration.harness import LumiRun, copy_app, wait

pytestmark = pytest.mark.slow


@pytest.fixture(params=["kafka", "nats"])
def events_url(request: pytest.FixtureRequest) -> str:
    """A broker URL with a namespace of its own on the session's tansu or nats-server."""
    name = f"t{uuid.uuid4().hex[:10]}"
    if request.param == "kafka":
        engine: Tansu = request.getfixturevalue("kafka_engine")
        return engine.url(f"prefix={name}.")
    server: NatsServer = request.getfixturevalue("nats_engine")
    return server.url(f"stream={name.upper()}&prefix={name}")


def with_environment(app: Path, name: str, events: str) -> None:
    """Add ``[env.NAME.defaults] events = ...`` to the app's lumi.toml (no code changes)."""
    config = app / "lumi.toml"
    config.write_text(config.read_text() + f'\n[env.{name}.defaults]\nevents = "{events}"\n')


def test_shop_runs_on_the_configured_broker(
    lumi_run: Callable[..., LumiRun], tmp_path: Path, events_url: str
) -> None:
    """With only its config pointing at the broker, the shop's Orders process publishes
    Orders.placed there and the Mailer process handles it; the event is on the broker (a
    client of its own reads it) and no embedded log was created."""
    app = copy_app(SHOP, tmp_path / "shop")
    with_environment(app, "broker", events_url)
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
    asyncio.run(_find_on_broker(events_url, app, order_id))


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
