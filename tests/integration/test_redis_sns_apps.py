"""The example shop and ``lumi events`` on the Redis and SNS brokers, by config only."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from lumi.brokers import create_broker
from lumi.brokers.base import Delivery
from lumi.testing import wait_until
from tests.conftest import SHOP
from tests.engines.moto import MotoServer
from tests.engines.redis import RedisServer
from tests.integration.harness import LumiRun, copy_app, wait

pytestmark = pytest.mark.slow

PLACED = '{"order_id": "o-1", "customer": "ada", "total_cents": 100}'


@pytest.fixture(params=["redis", "sns"])
def shop(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A copy of the example shop whose [defaults] events names the broker (a fresh
    namespace per test) — the only change."""
    tag = uuid.uuid4().hex[:8]
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        url = f"{server.url}?prefix=shop-{tag}:"
    else:
        moto: MotoServer = request.getfixturevalue("moto_server")
        url = moto.url(prefix=f"s{tag}-", wait="1s")
    app = copy_app(SHOP, tmp_path / "shop")
    config = app / "lumi.toml"
    text = config.read_text()
    assert 'events = "embedded"' in text
    config.write_text(text.replace('events = "embedded"', f'events = "{url}"', 1))
    return app


def events_url(app: Path) -> str:
    for line in (app / "lumi.toml").read_text().splitlines():
        if line.startswith("events = ") and "embedded" not in line:
            return line.split('"')[1]
    raise AssertionError("no events URL in the shop's config")


def test_shop_event_reaches_the_mailer_process(
    lumi_run: Callable[..., LumiRun], shop: Path
) -> None:
    """An order placed in the Orders process travels over the broker to the Mailer process."""
    run = lumi_run(shop)
    run.wait_ready()
    placed = run.post("Orders", "place", {"customer": "ada", "lines": [{"sku": "apple", "qty": 1}]})
    assert placed.status_code == 200, placed.text
    order_id = placed.json()["id"]
    sent = wait(
        lambda: run.post("Mailer", "sent", {"customer": "ada"}).json(),
        timeout=60,
        message="the confirmation",
    )
    assert sent == [f"Dear ada, order {order_id} is confirmed."]
    assert not (shop / ".lumi" / "events.db").exists()


def lumi_cmd(*args: str, app: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lumi.cli.main", *args, "--app", str(app)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
    )


async def lumi(*args: str, app: Path) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(lumi_cmd, *args, app=app)


async def test_events_cli_publish_tail_dlq(shop: Path) -> None:
    """publish stores a validated event; tail --from-start prints it; a failing group's dead
    letter is listed by dlq ls and sent back to it by dlq replay --id."""
    published = await lumi("events", "publish", "Orders.placed", "--json", PLACED, app=shop)
    assert published.returncode == 0, published.stderr
    event_id = published.stdout.strip()
    tail = await lumi("events", "tail", "Orders.placed", "--from-start", "-n", "1", app=shop)
    assert tail.returncode == 0, tail.stderr
    event = json.loads(tail.stdout)
    assert (event["id"], event["partitionkey"]) == (event_id, "ada")
    broken = True
    handled: list[str] = []

    async def mailer(delivery: Delivery) -> None:
        if broken:
            raise RuntimeError("smtp is down")
        handled.append(delivery.envelope.id)

    async with create_broker(events_url(shop), app_dir=shop) as broker:
        await broker.subscribe("Orders.placed", "Mailer", mailer, max_attempts=1, start="latest")
        failing = (
            await lumi("events", "publish", "Orders.placed", "--json", PLACED, app=shop)
        ).stdout.strip()

        async def dead_lettered() -> bool:
            return len(await broker.dead_letters()) == 1

        await wait_until(dead_lettered, timeout=60, message="a dead letter")
        listed = await lumi("events", "dlq", "ls", "--json", app=shop)
        letter = json.loads(listed.stdout)
        assert (letter["id"], letter["topic"], letter["group"], letter["attempts"]) == (
            failing, "Orders.placed", "Mailer", 1,
        )  # fmt: skip
        assert letter["reason"] == "failed 1 time(s); last error: RuntimeError: smtp is down"
        broken = False
        replayed = await lumi("events", "dlq", "replay", "--id", failing, app=shop)
        assert replayed.stdout.strip() == "replayed 1 dead letter(s)", replayed.stderr
        await wait_until(lambda: handled == [failing], timeout=60, message="the replayed event")
    empty = await lumi("events", "dlq", "ls", app=shop)
    assert empty.stdout.strip() == "no dead letters"
