"""Crash tests of the Redis and SNS brokers: real OS processes killed with SIGKILL, real engines.

The workers are ``event_worker.py`` processes (as for the embedded log) pointed at the broker
by ``LUMI_TEST_EVENTS``. Volumes are small on SNS: moto_server slows down past a few hundred
messages per queue.
"""

from __future__ import annotations

import collections
import uuid
from pathlib import Path

import pytest

from lumi.brokers import create_broker
from lumi.brokers.base import Broker, Delivery
from lumi.brokers.redis import RedisBroker
from lumi.testing import wait_until
from tests.engines.moto import MotoServer
from tests.engines.redis import RedisServer
from tests.integration.event_harness import TOPIC, Worker, events, log_lines

pytestmark = pytest.mark.slow


@pytest.fixture(params=["redis", "sns"])
def events_url(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> str:
    """The broker the workers use (a fresh namespace per test), with a short lease."""
    tag = uuid.uuid4().hex[:8]
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        url = f"{server.url}?lease=1s&prefix=crash-{tag}:"
    else:
        moto: MotoServer = request.getfixturevalue("moto_server")
        url = moto.url(lease="3s", wait="1s", prefix=f"c{tag}-")  # a loaded box renews late
    monkeypatch.setenv("LUMI_TEST_EVENTS", url)
    return url


def connect(url: str, app_dir: Path) -> Broker:
    return create_broker(url, app_dir=app_dir)


async def test_killed_replica_mid_handler_is_redelivered_to_another(
    tmp_path: Path, workers: list[Worker], events_url: str
) -> None:
    """Two replicas share a group; the one running the hanging handler is killed with SIGKILL:
    its event is redelivered to the survivor (attempt 2 or later) and every event is handled;
    only events the killed replica had started are handled twice."""
    logs = {name: tmp_path / f"{name}.log" for name in ("a", "b")}
    for log in logs.values():
        workers.append(Worker("consume", str(tmp_path), str(log)))
    for worker in workers:
        await worker.ready()
    sent = events(40, hang=7)
    async with connect(events_url, tmp_path) as broker:
        await broker.publish(TOPIC, sent)

    def started_hang() -> str | None:
        for name, log in logs.items():
            if any(line[:2] == ["start", "event-7"] for line in log_lines(log)):
                return name
        return None

    await wait_until(
        lambda: started_hang() is not None, timeout=60, message="the hanging handler to start"
    )
    victim_name = started_hang()
    assert victim_name is not None
    workers[list(logs).index(victim_name)].kill()
    survivor_log = logs["b" if victim_name == "a" else "a"]

    def all_done() -> bool:
        done = {line[1] for log in logs.values() for line in log_lines(log) if line[0] == "done"}
        return done == {e.id for e in sent}

    await wait_until(all_done, timeout=90, message="every event handled")
    done = collections.Counter(
        line[1] for log in logs.values() for line in log_lines(log) if line[0] == "done"
    )
    started_by_victim = {line[1] for line in log_lines(logs[victim_name]) if line[0] == "start"}
    assert {event_id for event_id, count in done.items() if count > 1} <= started_by_victim
    retried = [line for line in log_lines(survivor_log) if line[:2] == ["start", "event-7"]]
    assert retried and int(retried[-1][2]) >= 2


async def test_killed_publisher_loses_no_returned_publish(
    tmp_path: Path, workers: list[Worker], events_url: str
) -> None:
    """A publisher killed with SIGKILL while publishing: every event whose publish had returned
    (its id printed) reaches a group that subscribes afterwards from the earliest event (on SNS
    through the topic's archive)."""
    publisher = Worker("publish", str(tmp_path), "100000")
    workers.append(publisher)
    await publisher.ready()
    await wait_until(lambda: len(publisher.lines) > 21, timeout=60, message="20 publishes")
    publisher.kill()
    returned = {line for line in publisher.lines if line != "ready"}
    assert len(returned) > 20
    received: set[str] = set()

    async def collect(delivery: Delivery) -> None:
        received.add(delivery.envelope.id)

    async with connect(events_url, tmp_path) as broker:
        await broker.subscribe(TOPIC, "Audit", collect)
        await wait_until(lambda: returned <= received, timeout=60, message="every publish")
    assert returned <= received


async def test_redis_restart_with_aof_loses_nothing_acknowledged(tmp_path: Path) -> None:
    """Redis (AOF, appendfsync always) is killed with SIGKILL and restarted on the same data:
    every event whose publish returned is still there, and a group does not get back the
    events it had acknowledged, only the rest."""
    server = RedisServer(appendonly=True)
    server.start()
    try:
        sent = events(30)
        handled: list[str] = []

        async def first_half(delivery: Delivery) -> None:
            handled.append(delivery.envelope.id)

        async with RedisBroker(server.url, connect_timeout=5) as broker:
            subscription = await broker.subscribe(TOPIC, "G", first_half)
            await broker.publish(TOPIC, sent[:15])
            await wait_until(lambda: len(handled) == 15, timeout=30, message="15 handled")
            await subscription.aclose()  # every acknowledgement has returned
            await broker.publish(TOPIC, sent[15:])
        server.kill()
        server.start()
        again: list[str] = []
        everything: list[str] = []

        async def rest(delivery: Delivery) -> None:
            again.append(delivery.envelope.id)

        async def audit(delivery: Delivery) -> None:
            everything.append(delivery.envelope.id)

        async with RedisBroker(server.url, connect_timeout=5) as broker:
            await broker.subscribe(TOPIC, "G", rest)
            await broker.subscribe(TOPIC, "Audit", audit)
            await wait_until(
                lambda: len(again) >= 15 and len(everything) >= 30, timeout=30,
                message="the rest, and every event for a new group",
            )  # fmt: skip
        assert sorted(again) == sorted(e.id for e in sent[15:])
        assert sorted(everything) == sorted(e.id for e in sent)
    finally:
        server.destroy()
