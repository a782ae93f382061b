"""``lumi events`` against a copy of the example shop's embedded log, as a user runs it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lumi.brokers.base import Delivery
from lumi.brokers.embedded import EmbeddedBroker
from lumi.testing import wait_until
from tests.conftest import SHOP
from tests.integration.harness import copy_app

pytestmark = pytest.mark.slow


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """A private copy of the example shop (events = "embedded")."""
    return copy_app(SHOP, tmp_path / "shop")


def lumi_cmd(*args: str, app: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lumi.cli.main", *args, "--app", str(app)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
    )


async def lumi(*args: str, app: Path) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(lumi_cmd, *args, app=app)


PLACED = '{"order_id": "o-1", "customer": "ada", "total_cents": 100}'


async def test_publish_validates_then_tail_shows_the_event(shop: Path) -> None:
    """A valid payload is stored (its id printed) and tail --from-start prints it as
    CloudEvents JSON, with the partition key taken from the event's key field."""
    published = await lumi("events", "publish", "Orders.placed", "--json", PLACED, app=shop)
    assert published.returncode == 0, published.stderr
    event_id = published.stdout.strip()
    tail = await lumi("events", "tail", "Orders.placed", "--from-start", "-n", "1", app=shop)
    assert tail.returncode == 0, tail.stderr
    event = json.loads(tail.stdout)
    assert (event["id"], event["type"], event["partitionkey"]) == (event_id, "Orders.placed", "ada")
    assert event["data"] == json.loads(PLACED) and event["source"] == "/lumi/shop/Orders"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["Orders.placed", "--json", '{"order_id": "o-1", "customer": 3}'],
            "error: INVALID_ARGUMENT: invalid payload for event Orders.placed: customer: Input "
            "should be a valid string; total_cents: Field required",
        ),
        (
            ["Orders.plcaed", "--json", "{}"],
            "error: Orders exports no event 'plcaed'; did you mean",
        ),
        (["Orders", "--json", "{}"], "error: 'Orders' is not a topic; topics are SERVICE.EVENT"),
        (["Orders.placed", "--json", "{x"], "error: --json is not valid JSON"),
    ],
)
def test_publish_refuses_bad_input_in_one_line(shop: Path, args: list[str], message: str) -> None:
    """Bad topics and payloads are one error line, no traceback, non-zero exit."""
    result = lumi_cmd("events", "publish", *args, app=shop)
    assert result.returncode != 0
    assert result.stderr.strip().startswith(message), result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_topic_outside_the_app_is_published_as_given(shop: Path) -> None:
    """A topic of a service the app does not have is published without a schema to check,
    and tailed with --any-topic."""
    result = lumi_cmd("events", "publish", "Billing.paid", "--json", '{"any": [1]}', app=shop)
    assert result.returncode == 0, result.stderr
    tail = lumi_cmd(
        "events", "tail", "Billing.paid", "--from-start", "-n", "1", "--any-topic", app=shop
    )
    assert json.loads(tail.stdout)["data"] == {"any": [1]}


async def test_tail_follows_new_events(shop: Path) -> None:
    """tail (without --from-start) prints events published after it started, then exits
    after --count of them."""
    await lumi("events", "publish", "Orders.placed", "--json", PLACED, app=shop)  # before: unseen
    tail = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lumi.cli.main", "events", "tail", "Orders.placed", "-n", "2",
        "--app", str(shop),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert tail.stderr is not None
    assert (await asyncio.wait_for(tail.stderr.readline(), 60)).startswith(b"tailing")
    ids = [
        (
            await lumi("events", "publish", "Orders.placed", "--json", PLACED, app=shop)
        ).stdout.strip()
        for _ in range(2)
    ]
    out, _ = await asyncio.wait_for(tail.communicate(), 60)
    assert tail.returncode == 0
    assert [json.loads(line)["id"] for line in out.decode().splitlines()] == ids


async def test_dead_letters_listed_and_replayed(shop: Path) -> None:
    """dlq ls shows a dead letter with its reason; dlq replay --id sends it back to the group,
    whose fixed handler then gets it, and the list is empty again."""
    broken = True
    handled: list[str] = []

    async def mailer(delivery: Delivery) -> None:
        if broken:
            raise RuntimeError("smtp is down")
        handled.append(delivery.envelope.id)

    async with EmbeddedBroker(shop / ".lumi" / "events.db") as broker:
        await broker.subscribe("Orders.placed", "Mailer", mailer, max_attempts=1)
        event_id = (
            await lumi("events", "publish", "Orders.placed", "--json", PLACED, app=shop)
        ).stdout.strip()

        async def dead_lettered() -> bool:
            return len(await broker.dead_letters()) == 1

        await wait_until(dead_lettered, timeout=30, message="a dead letter")
        listed = await lumi("events", "dlq", "ls", "--json", app=shop)
        letter = json.loads(listed.stdout)
        assert (letter["id"], letter["topic"], letter["group"], letter["attempts"]) == (
            event_id,
            "Orders.placed",
            "Mailer",
            1,
        )
        assert letter["reason"] == "failed 1 time(s); last error: RuntimeError: smtp is down"
        plain = await lumi("events", "dlq", "ls", "Orders.placed.Mailer.dlq", app=shop)
        assert event_id in plain.stdout and "smtp is down" in plain.stdout
        broken = False
        replayed = await lumi("events", "dlq", "replay", "--id", event_id, app=shop)
        assert replayed.stdout.strip() == "replayed 1 dead letter(s)", replayed.stderr
        await wait_until(lambda: handled == [event_id], timeout=30, message="the replayed event")
    empty = await lumi("events", "dlq", "ls", app=shop)
    assert empty.stdout.strip() == "no dead letters"
    again = await lumi("events", "dlq", "replay", "--all", app=shop)
    assert again.returncode == 1 and "no dead letters matched" in again.stderr


def test_memory_broker_cannot_be_reached(shop: Path) -> None:
    """An environment whose events use the memory broker gets one line saying why not."""
    result = lumi_cmd("events", "dlq", "ls", "--env", "test", app=shop)
    assert result.returncode != 0
    assert "memory broker, which lives inside one process" in result.stderr
