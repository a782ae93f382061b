"""The loop's CPU per event of Lumi's Kafka member and of the raw side of
``bench/broker_bench.py``, on the same records fetched from a real broker, with no consumer
thread running: what each loop costs by itself, to set against what it costs in the bench,
where the consumer thread, librdkafka and the broker run beside it.

It starts tansu, fills a topic through Lumi's broker, fetches every record with a plain
confluent-kafka consumer, then hands the records, in batches of 500, alternately to a
:class:`GroupMember` (no-op handler, commits to a stand-in) and to the raw loop (each record
read into a validated ``Envelope`` and passed to an async handler), five rounds each::

    python bench/kafka_consume_loops.py [events] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import types
import uuid
from pathlib import Path
from typing import Any

import confluent_kafka as ck

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the engine starters live with the tests
sys.path.insert(0, str(ROOT / "bench"))

import broker_bench as bench  # noqa: E402
from kafka_consume_cost import Thread  # noqa: E402

from lumi.brokers import create_broker  # noqa: E402
from lumi.brokers._kafka_consumer import GroupMember  # noqa: E402
from lumi.brokers.base import Backoff, Delivery  # noqa: E402
from lumi.model.envelope import Envelope  # noqa: E402

BATCH = 500


def fetch(bootstrap: str, topic: str, events: int) -> list[Any]:
    consumer = ck.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"fetch-{uuid.uuid4().hex}",
         "auto.offset.reset": "earliest", "enable.auto.commit": False}
    )  # fmt: skip
    consumer.subscribe([topic])
    records: list[Any] = []
    deadline = time.monotonic() + 120
    while len(records) < events and time.monotonic() < deadline:
        records.extend(m for m in consumer.consume(BATCH, 1.0) if m.error() is None)
    consumer.close()
    if len(records) != events:
        raise SystemExit(f"fetched {len(records)} of {events} records")
    return records


async def lumi_loop(records: list[Any]) -> float:
    """µs of loop CPU per record for a group member handling ``records``."""
    loop = asyncio.get_running_loop()
    broker: Any = types.SimpleNamespace(
        backoff=Backoff(), concurrency=32, window=10**9, loop=loop, drain_timeout=5,
        forget=lambda s: None, name_of=lambda topic: records[0].topic(),
    )  # fmt: skip
    done, count = asyncio.Event(), 0

    async def handler(delivery: Delivery) -> None:
        nonlocal count
        count += 1
        if count == len(records):
            done.set()

    member = GroupMember(broker, "Bench.ticked", "Bench", handler, max_attempts=5, start="earliest")
    thread = Thread()
    member._thread = thread  # type: ignore[assignment]
    member._took(sorted({(r.topic(), r.partition()) for r in records}))
    started = time.thread_time()
    for start in range(0, len(records), BATCH):
        member._on_messages(records[start : start + BATCH])
        await asyncio.sleep(0)
    await asyncio.wait_for(done.wait(), 60)
    for _ in range(3):
        await asyncio.sleep(0)  # the commit points' hand-over
    cpu = time.thread_time() - started
    await member.runner.stop(1)
    # a fresh topic: each partition's commit point is the number of its records handled
    assert sum(thread.commits.values()) == len(records), thread.commits
    return cpu / len(records) * 1e6


async def raw_loop(records: list[Any]) -> float:
    """µs of loop CPU per record for the raw side's loop handling ``records``."""
    count = 0

    async def handler(msg: Any) -> None:
        nonlocal count
        Envelope.from_json(msg.value())  # reads and validates the event, as Lumi does
        count += 1

    started = time.thread_time()
    for start in range(0, len(records), BATCH):
        for msg in records[start : start + BATCH]:
            await handler(msg)
        await asyncio.sleep(0)
    assert count == len(records)
    return (time.thread_time() - started) / len(records) * 1e6


async def main(url: str, events: int, rounds: int) -> dict[str, float]:
    async with create_broker(url, app_dir=Path(".")) as broker:
        topic = f"Bench{uuid.uuid4().hex[:8]}.ticked"
        await bench._fill(broker, topic, events)
        name = broker.name_of(topic)  # type: ignore[attr-defined]
    bootstrap = url.split("://", 1)[1].split("?", 1)[0]
    records = await asyncio.to_thread(fetch, bootstrap, name, events)
    lumi, raw = [], []
    for _ in range(rounds):
        lumi.append(await lumi_loop(records))
        raw.append(await raw_loop(records))
    return {"lumi_us": statistics.median(lumi), "raw_us": statistics.median(raw)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", type=int, nargs="?", default=50000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    with bench.engine("kafka") as url:
        result = asyncio.run(main(url, args.events, args.rounds))
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{args.events} records, loop CPU per record (median of {args.rounds}): "
            f"Lumi {result['lumi_us']:.2f} µs, raw {result['raw_us']:.2f} µs "
            f"({result['lumi_us'] / result['raw_us']:.2f}x)"
        )
