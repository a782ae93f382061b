"""Crash tests of the embedded event log with real OS processes killed by SIGKILL."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

from lumi.brokers.embedded import EmbeddedBroker
from lumi.testing import wait_until
from tests.integration.event_harness import (
    TOPIC,
    Worker,
    events,
    log_lines,
    publish,
)

pytestmark = pytest.mark.slow


async def test_killed_replica_mid_handler_loses_nothing(
    tmp_path: Path, workers: list[Worker]
) -> None:
    """Two replicas share a group; the one running the hanging handler is killed with SIGKILL:
    its events are redelivered to the survivor, every event is handled, and only events the
    killed replica had started are handled twice."""
    logs = {name: tmp_path / f"{name}.log" for name in ("a", "b")}
    for log in logs.values():
        workers.append(Worker("consume", str(tmp_path), str(log)))
    for worker in workers:
        await worker.ready()
    sent = events(200, hang=37)
    await publish(tmp_path, sent)

    def started_hang() -> str | None:
        for name, log in logs.items():
            if any(line[:2] == ["start", "event-37"] for line in log_lines(log)):
                return name
        return None

    await wait_until(
        lambda: started_hang() is not None, timeout=60, message="the hanging handler to start"
    )
    victim_name = started_hang()
    assert victim_name is not None
    victim = workers[list(logs).index(victim_name)]
    victim.kill()
    survivor_log = logs["b" if victim_name == "a" else "a"]

    def all_done() -> bool:
        done = {line[1] for log in logs.values() for line in log_lines(log) if line[0] == "done"}
        return done == {e.id for e in sent}

    await wait_until(all_done, timeout=60, message="every event handled")
    done = collections.Counter(
        line[1] for log in logs.values() for line in log_lines(log) if line[0] == "done"
    )
    started_by_victim = {line[1] for line in log_lines(logs[victim_name]) if line[0] == "start"}
    twice = {event_id for event_id, count in done.items() if count > 1}
    assert twice <= started_by_victim
    survivor_attempts = [
        line for line in log_lines(survivor_log) if line[:2] == ["start", "event-37"]
    ]
    assert survivor_attempts and int(survivor_attempts[-1][2]) >= 2


async def test_killed_consumer_gets_the_event_after_restart(
    tmp_path: Path, workers: list[Worker]
) -> None:
    """A single replica killed in the middle of a handler gets that event again when it is
    restarted (attempt 2), and the events after it too."""
    log = tmp_path / "consumer.log"
    workers.append(Worker("consume", str(tmp_path), str(log)))
    await workers[0].ready()
    sent = events(10, hang=3)
    await publish(tmp_path, sent)
    await wait_until(
        lambda: ["start", "event-3", "1"] in [line[:3] for line in log_lines(log)],
        timeout=60,
        message="hanging handler",
    )
    workers[0].kill()
    workers.append(Worker("consume", str(tmp_path), str(log)))
    await workers[1].ready()

    def all_done() -> bool:
        return {line[1] for line in log_lines(log) if line[0] == "done"} == {e.id for e in sent}

    await wait_until(all_done, timeout=60, message="every event handled after the restart")
    assert ["start", "event-3", "2"] in [line[:3] for line in log_lines(log)]


async def test_killed_publisher_loses_no_returned_publish(
    tmp_path: Path, workers: list[Worker]
) -> None:
    """A publisher killed with SIGKILL while publishing: every event whose publish had
    returned (its id printed) is in the log."""
    publisher = Worker("publish", str(tmp_path), "100000")
    workers.append(publisher)
    await publisher.ready()
    await wait_until(lambda: len(publisher.lines) > 51, timeout=60, message="50 publishes")
    publisher.kill()
    returned = {line for line in publisher.lines if line != "ready"}
    assert len(returned) > 50
    received: set[str] = set()
    async with EmbeddedBroker(tmp_path / ".lumi" / "events.db") as broker:

        async def collect(delivery: object) -> None:
            received.add(delivery.envelope.id)  # type: ignore[attr-defined]

        await broker.subscribe(TOPIC, "Audit", collect)
        await wait_until(lambda: returned <= received, timeout=30, message="every returned publish")
    assert returned <= received
