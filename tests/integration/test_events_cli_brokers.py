"""``lumi events`` on Kafka (tansu) and NATS JetStream, as a user runs it against the shop."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lumi.brokers import create_broker
from lumi.brokers.base import Broker, Delivery
from lumi.testing import wait_until
from tests.conformance.broker_contract import envelope
from tests.conftest import SHOP
from tests.engines.brokers import with_environment
from tests.integration.harness import copy_app

pytestmark = pytest.mark.slow

PLACED = '{"order_id": "o-1", "customer": "ada", "total_cents": 100}'


@pytest.fixture
def shop(tmp_path: Path, network_broker: str) -> Path:
    """A copy of the shop whose environment "broker" puts its events on the test's broker."""
    app = copy_app(SHOP, tmp_path / "shop")
    with_environment(app, "broker", network_broker)
    return app


async def lumi(*args: str, app: Path) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "lumi.cli.main", *args, "--app", str(app), "--env", "broker"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
    )


async def test_publish_then_tail_from_start(shop: Path) -> None:
    """A validated publish prints its id; tail --from-start prints it as CloudEvents JSON."""
    published = await lumi("events", "publish", "Orders.placed", "--json", PLACED, app=shop)
    assert published.returncode == 0, published.stderr
    event_id = published.stdout.strip()
    tail = await lumi("events", "tail", "Orders.placed", "--from-start", "-n", "1", app=shop)
    assert tail.returncode == 0, tail.stderr
    event = json.loads(tail.stdout)
    assert (event["id"], event["type"], event["partitionkey"]) == (event_id, "Orders.placed", "ada")
    assert event["data"] == json.loads(PLACED)


async def test_tail_follows_new_events(shop: Path) -> None:
    """tail without --from-start prints only events published after it started."""
    await lumi("events", "publish", "Orders.placed", "--json", PLACED, app=shop)  # before: unseen
    tail = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lumi.cli.main", "events", "tail", "Orders.placed", "-n", "2",
        "--app", str(shop), "--env", "broker",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert tail.stderr is not None
    assert (await asyncio.wait_for(tail.stderr.readline(), 60)).startswith(b"tailing")
    ids = []
    for _ in range(2):
        result = await lumi("events", "publish", "Orders.placed", "--json", PLACED, app=shop)
        ids.append(result.stdout.strip())
    out, _ = await asyncio.wait_for(tail.communicate(), 60)
    assert tail.returncode == 0
    assert [json.loads(line)["id"] for line in out.decode().splitlines()] == ids


async def test_dead_letters_listed_and_replayed(shop: Path, network_broker: str) -> None:
    """dlq ls shows a dead letter with its reason; dlq replay --id sends it back to the
    group, whose fixed handler gets it; then the list is empty."""
    broken = True
    handled: list[str] = []

    async def mailer(delivery: Delivery) -> None:
        if broken:
            raise RuntimeError("smtp is down")
        handled.append(delivery.envelope.id)

    async with create_broker(network_broker, app_dir=shop) as broker:
        await broker.subscribe("Orders.placed", "Mailer", mailer, max_attempts=1)
        published = await lumi("events", "publish", "Orders.placed", "--json", PLACED, app=shop)
        event_id = published.stdout.strip()

        async def dead_lettered() -> bool:
            return len(await broker.dead_letters()) == 1

        await wait_until(dead_lettered, timeout=30, message="a dead letter")
        listed = await lumi("events", "dlq", "ls", "--json", app=shop)
        assert listed.returncode == 0, listed.stderr
        letter = json.loads(listed.stdout)
        assert (letter["id"], letter["topic"], letter["group"], letter["attempts"]) == (
            event_id, "Orders.placed", "Mailer", 1,
        )  # fmt: skip
        assert letter["reason"] == "failed 1 time(s); last error: RuntimeError: smtp is down"
        broken = False
        replayed = await lumi("events", "dlq", "replay", "--id", event_id, app=shop)
        assert replayed.stdout.strip() == "replayed 1 dead letter(s)", replayed.stderr
        await wait_until(lambda: handled == [event_id], timeout=30, message="the replayed event")
    empty = await lumi("events", "dlq", "ls", "Orders.placed.Mailer.dlq", app=shop)
    assert empty.stdout.strip() == "no dead letters"


async def test_dlq_ls_without_topic_asks_every_broker_of_the_app(
    tmp_path: Path, network_broker: str
) -> None:
    """With the default on the embedded log and one service on a network broker, dlq ls (no
    topic) lists the dead letters of both, oldest first."""
    app = copy_app(SHOP, tmp_path / "shop")
    config = app / "lumi.toml"
    config.write_text(config.read_text() + f'\n[services.Mailer]\nevents = "{network_broker}"\n')
    ids = []
    for url in ("embedded", network_broker):
        async with create_broker(url, app_dir=app) as broker:
            await broker.subscribe("Orders.placed", "Mailer", _failing, max_attempts=1)
            event = envelope("Orders.placed", json.loads(PLACED), key="ada")
            await broker.publish("Orders.placed", [event])
            ids.append(event.id)

            async def dead(broker: Broker = broker) -> bool:
                return len(await broker.dead_letters()) == 1

            await wait_until(dead, timeout=30, message=f"a dead letter on {url}")
    listed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "lumi.cli.main", "events", "dlq", "ls", "--json", "--app", str(app)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == ids


async def _failing(delivery: Delivery) -> None:
    raise RuntimeError("smtp is down")
