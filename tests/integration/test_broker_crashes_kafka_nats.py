"""Crash tests on Kafka (tansu) and NATS JetStream: replicas, publishers and the broker itself
killed with SIGKILL, and nothing that was acknowledged is lost."""

from __future__ import annotations

import asyncio
import collections
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from lumi.brokers import create_broker
from lumi.brokers.base import Broker, Delivery
from lumi.testing import wait_until
from tests.conformance.broker_contract import envelope
from tests.engines.kafka import Tansu
from tests.engines.nats import NatsServer
from tests.integration.event_harness import TOPIC, Worker, events, log_lines

pytestmark = pytest.mark.slow


@pytest.fixture(params=["kafka", "nats"])
def broker_url(request: pytest.FixtureRequest) -> str:
    """A fresh namespace on the session's broker: tansu (Kafka) or nats-server (JetStream,
    with a two-second lease so a dead replica's events come back quickly)."""
    name = f"t{uuid.uuid4().hex[:10]}"
    if request.param == "kafka":
        engine: Tansu = request.getfixturevalue("kafka_engine")
        return engine.url(f"prefix={name}.")
    server: NatsServer = request.getfixturevalue("nats_engine")
    return server.url(f"stream={name.upper()}&prefix={name}&lease=2s")


@pytest.fixture
async def connected(broker_url: str, tmp_path: Path) -> AsyncIterator[Broker]:
    async with create_broker(broker_url, app_dir=tmp_path) as broker:
        yield broker


def consumer(tmp_path: Path, url: str, name: str) -> Worker:
    env = {"LUMI_TEST_EVENTS": url, "LUMI_TEST_HANG_ONCE": str(tmp_path / "hung")}
    return Worker("consume", str(tmp_path), str(tmp_path / f"{name}.log"), env=env)


def done_ids(*logs: Path) -> collections.Counter[str]:
    return collections.Counter(
        line[1] for log in logs for line in log_lines(log) if line[0] == "done"
    )


async def test_killed_replica_mid_handler_hands_its_events_over(
    broker_url: str, connected: Broker, tmp_path: Path, workers: list[Worker]
) -> None:
    """Two replicas share a group; the one whose handler hangs is SIGKILLed: its events,
    the hanging one included, are handled by the survivor; only events the victim had started
    are handled twice."""
    logs = {name: tmp_path / f"{name}.log" for name in ("a", "b")}
    for name in logs:
        workers.append(consumer(tmp_path, broker_url, name))
    for worker in workers:
        await worker.ready()
    sent = events(200, hang=37)
    await connected.publish(TOPIC, sent)

    def hung() -> str | None:
        for name, log in logs.items():
            if any(line[:2] == ["start", "event-37"] for line in log_lines(log)):
                return name
        return None

    await wait_until(lambda: hung() is not None, timeout=60, message="the hanging handler")
    victim = hung()
    assert victim is not None
    workers[list(logs).index(victim)].kill()
    survivor = "b" if victim == "a" else "a"
    await wait_until(
        lambda: set(done_ids(*logs.values())) == {e.id for e in sent},
        timeout=90,
        message="every event handled",
    )
    started_by_victim = {line[1] for line in log_lines(logs[victim]) if line[0] == "start"}
    twice = {i for i, n in done_ids(*logs.values()).items() if n > 1}
    assert twice <= started_by_victim
    assert "event-37" in done_ids(logs[survivor])
    assert "event-37" not in done_ids(logs[victim])


async def test_killed_publisher_loses_no_returned_publish(
    broker_url: str, connected: Broker, tmp_path: Path, workers: list[Worker]
) -> None:
    """A publisher SIGKILLed while publishing one event at a time: every event whose publish
    had returned (its id printed) is on the broker."""
    publisher = Worker("publish", str(tmp_path), "100000", env={"LUMI_TEST_EVENTS": broker_url})
    workers.append(publisher)
    await publisher.ready()
    await wait_until(lambda: len(publisher.lines) > 51, timeout=60, message="50 publishes")
    publisher.kill()
    returned = {line for line in publisher.lines if line != "ready"}
    assert len(returned) > 50
    received: set[str] = set()

    async def collect(delivery: Delivery) -> None:
        received.add(delivery.envelope.id)

    await connected.subscribe(TOPIC, "Audit", collect)
    await wait_until(lambda: returned <= received, timeout=60, message="every returned publish")


async def _survives_restart(broker: Broker, restart: Callable[[], None], *, exact: bool) -> None:
    """Publish 30 events, let group G handle 10, restart the broker; then all 30 are still
    there (a new group reads them) and G gets the 20 it had not acknowledged (``exact``: and
    none of the 10 it had)."""
    topic = f"Svc{uuid.uuid4().hex[:8]}.made"
    sent = [envelope(topic, {"n": n}) for n in range(30)]
    first: list[str] = []

    async def take_ten(delivery: Delivery) -> None:
        if len(first) >= 10:
            raise RuntimeError("not now")  # fails, so it is not acknowledged
        first.append(delivery.envelope.id)

    subscription = await broker.subscribe(topic, "G", take_ten, max_attempts=1000)
    await broker.publish(topic, sent)
    await wait_until(lambda: len(first) == 10, timeout=30, message="ten handled")
    await subscription.aclose()
    restart()
    rest: list[str] = []
    everything: list[str] = []
    await broker.subscribe(topic, "G", _note(rest))
    await broker.subscribe(topic, "Fresh", _note(everything))
    await wait_until(
        lambda: len(rest) >= 20 and len(everything) >= 30, timeout=60, message="after restart"
    )
    await asyncio.sleep(0.5)  # anything redelivered by mistake would arrive by now
    assert sorted(everything) == sorted(e.id for e in sent)
    unacknowledged = {e.id for e in sent} - set(first)
    assert set(rest) >= unacknowledged
    if exact:
        assert sorted(rest) == sorted(unacknowledged)


def _note(into: list[str]) -> Callable[[Delivery], Awaitable[None]]:
    async def handle(delivery: Delivery) -> None:
        into.append(delivery.envelope.id)

    return handle


@pytest.mark.parametrize("graceful", [False, True], ids=["sigkill", "sigterm"])
async def test_nats_restart_keeps_what_was_acknowledged(tmp_path: Path, graceful: bool) -> None:
    """nats-server with file storage, stopped and started again on the same store (the client
    reconnects): every acknowledged publish survives and no unacknowledged delivery is lost.
    After SIGTERM no acknowledged delivery comes again either; after SIGKILL the last moment's
    acknowledgements may (JetStream writes consumer state asynchronously): at-least-once."""
    server = NatsServer(tmp_path)
    server.start()
    try:
        async with create_broker(server.url("lease=2s"), app_dir=tmp_path) as broker:
            await _survives_restart(
                broker, lambda: server.restart(graceful=graceful), exact=graceful
            )
    finally:
        server.stop()


async def test_tansu_restart_keeps_what_was_acknowledged(tansu_s3: Tansu, tmp_path: Path) -> None:
    """tansu storing in S3 (moto), SIGKILLed and started again: every acknowledged publish and
    every committed offset survives (the client reconnects)."""
    async with create_broker(tansu_s3.url(), app_dir=tmp_path) as broker:
        await _survives_restart(broker, tansu_s3.restart, exact=True)
