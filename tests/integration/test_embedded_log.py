"""The embedded log's own promises: durable commits, prompt cross-process wake-ups, several
publisher processes at once, retention, a shared dedupe table, and clear errors."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time
from pathlib import Path

import pytest

from lumi.brokers.base import Delivery
from lumi.brokers.embedded import EmbeddedBroker
from lumi.model.envelope import Envelope
from lumi.model.errors import Unavailable
from lumi.testing import wait_until
from tests.integration.event_harness import (
    TOPIC,
    Worker,
    events,
    log_lines,
    publish,
)

pytestmark = pytest.mark.slow


def db(app_dir: Path) -> Path:
    return app_dir / ".lumi" / "events.db"


async def test_publish_is_committed_when_it_returns(tmp_path: Path) -> None:
    """Right after publish returns, another connection sees the rows, in a WAL-mode file."""
    async with EmbeddedBroker(db(tmp_path)) as broker:
        await broker.publish(TOPIC, events(3))
        with sqlite3.connect(db(tmp_path)) as conn:
            rows = conn.execute("SELECT topic FROM events ORDER BY seq").fetchall()
            (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
        assert rows == [(TOPIC,)] * 3 and mode == "wal"


async def test_other_process_is_woken_without_polling(
    tmp_path: Path, workers: list[Worker]
) -> None:
    """A consumer process whose fallback poll is 60 s starts each of five events, published
    one at a time by this process once it is idle, well within a second: it was woken."""
    log = tmp_path / "consumer.log"
    workers.append(Worker("consume", str(tmp_path), str(log), "60"))
    await workers[0].ready()
    for event in events(5):
        published_at = time.time()
        await publish(tmp_path, [event])
        await wait_until(
            lambda event_id=event.id: ["done", event_id] in log_lines(log),
            timeout=30,
            message=f"the consumer to handle {event.id}",
        )
        start = next(x for x in log_lines(log) if x[:2] == ["start", event.id])
        assert float(start[3]) - published_at < 1.0


async def test_several_publisher_processes_at_once(tmp_path: Path, workers: list[Worker]) -> None:
    """Three processes publishing at the same time lose nothing and duplicate nothing."""
    for _ in range(3):
        workers.append(Worker("publish", str(tmp_path), "300"))
    received: list[str] = []

    async def collect(delivery: Delivery) -> None:
        received.append(delivery.envelope.id)

    async with EmbeddedBroker(db(tmp_path)) as broker:
        await broker.subscribe(TOPIC, "Audit", collect)
        for worker in workers:
            await wait_until(
                lambda w=worker: w.proc.poll() is not None, timeout=120, message="publisher"
            )
            assert worker.proc.returncode == 0
        published = [line for w in workers for line in w.lines if line != "ready"]
        assert len(published) == 900
        await wait_until(lambda: len(received) >= 900, timeout=30, message="900 events")
    assert sorted(received) == sorted(published)


async def test_retention_removes_old_events_by_age_and_count(tmp_path: Path) -> None:
    """Events older than the retention age go and newer ones stay; beyond max_events per
    topic only the newest stay."""
    async with EmbeddedBroker(db(tmp_path), retention=2.0, retention_interval=0.05) as broker:
        await broker.publish(TOPIC, events(5))
        await asyncio.sleep(2.1)  # let these five age past the retention
        fresh = [dataclasses.replace(e, id=f"fresh-{i}") for i, e in enumerate(events(2))]
        await broker.publish(TOPIC, fresh)
        await wait_until(
            lambda: _ids(tmp_path) == ["fresh-0", "fresh-1"], timeout=10, message="only fresh"
        )
    async with EmbeddedBroker(
        db(tmp_path), retention=None, max_events=3, retention_interval=0.05
    ) as broker:
        await broker.publish(TOPIC, events(10))
        await wait_until(
            lambda: _ids(tmp_path) == ["event-7", "event-8", "event-9"],
            timeout=10,
            message="count retention",
        )


def _ids(app_dir: Path) -> list[str]:
    with sqlite3.connect(db(app_dir)) as conn:
        rows = conn.execute("SELECT body FROM events WHERE topic = ? ORDER BY seq", (TOPIC,))
        return [Envelope.from_json(body).id for (body,) in rows]


async def test_dedupe_table_is_shared_by_connections(tmp_path: Path) -> None:
    """An event id marked handled through one connection is seen through another."""
    async with EmbeddedBroker(db(tmp_path)) as one, EmbeddedBroker(db(tmp_path)) as two:
        store_one, store_two = one.dedupe_store(), two.dedupe_store()
        assert not await store_two.seen("Topic/Group", "ev-1")
        await store_one.mark("Topic/Group", "ev-1")
        assert await store_two.seen("Topic/Group", "ev-1")
        assert not await store_two.seen("Topic/Other", "ev-1")


async def test_a_log_from_a_newer_lumi_is_refused(tmp_path: Path) -> None:
    """A database with a newer schema version fails to open with an error saying to upgrade."""
    db(tmp_path).parent.mkdir(parents=True)
    with sqlite3.connect(db(tmp_path)) as conn:
        conn.execute("PRAGMA user_version=99")
    with pytest.raises(Unavailable, match="newer Lumi.*upgrade lumi-runtime"):
        await EmbeddedBroker(db(tmp_path)).start()


async def test_a_log_that_cannot_be_created_is_a_clear_error(tmp_path: Path) -> None:
    """A log path whose folder is a file fails with an error naming the path."""
    (tmp_path / "blocker").write_text("not a folder")
    with pytest.raises(Unavailable, match="cannot create the event log folder .*blocker"):
        await EmbeddedBroker(tmp_path / "blocker" / "events.db").start()
