"""Event broker benchmark: the embedded SQLite log next to the memory broker.

For each broker it measures
* publish throughput: one event per call awaited in turn (``single``), one event per call from
  64 concurrent publishers (``concurrent``, where group commit shares fsyncs), batches of 500
  envelopes (``batched``), and batches through a service's ``publish_many`` (``service_batched``:
  payload validation and envelope building included);
* end-to-end latency, publish call → handler start, at a fixed rate (one event per 1/rate s),
  with the consumer in the same process and — embedded only — in another process.

Every embedded publish is durable when it returns (``synchronous=FULL`` commit, WAL fsynced).
Run: ``python bench/events_bench.py [--events 20000] [--rate 1000] [--seconds 5] [--json]``.
Goals (issue 4): embedded batched >= 20,000 events/s; e2e p50 <= 5 ms at 1,000 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pydantic

import lumi
from lumi.brokers.base import Broker, Delivery
from lumi.brokers.embedded import EmbeddedBroker
from lumi.brokers.memory import MemoryBroker
from lumi.model.context import new_id
from lumi.model.envelope import Envelope

TOPIC = "Bench.ticked"


class Ticked(pydantic.BaseModel):
    n: int
    sent: float
    note: str = "a small payload, like most events"


class Bench(lumi.Service):
    ticked = lumi.event(Ticked)


def envelope(n: int) -> Envelope:
    data = Ticked(n=n, sent=time.time()).model_dump_json().encode()
    return Envelope(id=new_id(), source="/bench", type=TOPIC, data=data, time="", partitionkey=None)


@contextlib.asynccontextmanager
async def opened(kind: str, folder: Path) -> AsyncIterator[Broker]:
    broker: Broker = (
        MemoryBroker() if kind == "memory" else EmbeddedBroker(folder / f"{new_id()}.db")
    )
    async with broker:
        yield broker


async def rate(fn: Callable[[], Any], events: int) -> float:
    started = time.perf_counter()
    await fn()
    return events / (time.perf_counter() - started)


async def throughput(kind: str, folder: Path, events: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    async with opened(kind, folder) as broker:
        single_n = max(1, events // 10)

        async def single() -> None:
            for n in range(single_n):
                await broker.publish(TOPIC, [envelope(n)])

        figures["single"] = await rate(single, single_n)

        async def concurrent() -> None:
            async def publisher(offset: int) -> None:
                for n in range(offset, events, 64):
                    await broker.publish(TOPIC, [envelope(n)])

            await asyncio.gather(*(publisher(i) for i in range(64)))

        figures["concurrent"] = await rate(concurrent, events)
        batches = [
            [envelope(n) for n in range(i, min(events, i + 500))] for i in range(0, events, 500)
        ]

        async def batched() -> None:
            for batch in batches:
                await broker.publish(TOPIC, batch)

        figures["batched"] = await rate(batched, events)
        async with lumi.App([Bench], broker=broker) as app:
            bench = app.service(Bench)
            payloads = [Ticked(n=n, sent=0.0) for n in range(500)]

            async def service_batched() -> None:
                for _ in range(0, events, 500):
                    await bench.ticked.publish_many(payloads)

            figures["service_batched"] = await rate(service_batched, events - events % 500 or 500)
    return figures


async def paced_publish(broker: Broker, rate_per_s: float, count: int) -> None:
    started = time.perf_counter()
    for n in range(count):
        delay = started + n / rate_per_s - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await broker.publish(TOPIC, [envelope(n)])


def percentiles(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "p50_ms": statistics.median(ordered) * 1e3,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3,
        "received": len(ordered),
    }


async def latency_in_process(
    kind: str, folder: Path, rate_per_s: float, count: int
) -> dict[str, float]:
    latencies: list[float] = []
    done = asyncio.Event()

    async def handler(delivery: Delivery) -> None:
        sent = json.loads(delivery.envelope.data)["sent"]
        latencies.append(time.time() - sent)
        if len(latencies) >= count:
            done.set()

    async with opened(kind, folder) as broker:
        await broker.subscribe(TOPIC, "Consumer", handler, start="latest")
        await paced_publish(broker, rate_per_s, count)
        await asyncio.wait_for(done.wait(), 60)
    return percentiles(latencies)


async def latency_cross_process(folder: Path, rate_per_s: float, count: int) -> dict[str, float]:
    path = folder / "shared.db"
    async with EmbeddedBroker(path) as broker:
        consumer = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--consume", str(path), "--events", str(count),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert consumer.stdout is not None
        assert (await consumer.stdout.readline()).strip() == b"ready"
        await paced_publish(broker, rate_per_s, count)
        out, _ = await asyncio.wait_for(consumer.communicate(), 120)
    result: dict[str, float] = json.loads(out)
    return result


async def consume(path: Path, count: int) -> None:
    """The consumer process of the cross-process latency run."""
    latencies: list[float] = []
    done = asyncio.Event()

    async def handler(delivery: Delivery) -> None:
        latencies.append(time.time() - json.loads(delivery.envelope.data)["sent"])
        if len(latencies) >= count:
            done.set()

    async with EmbeddedBroker(path) as broker:
        await broker.subscribe(TOPIC, "Consumer", handler, start="latest")
        print("ready", flush=True)
        await asyncio.wait_for(done.wait(), 120)
    print(json.dumps(percentiles(latencies)), flush=True)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    count = int(args.rate * args.seconds)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for kind in ("memory", "embedded"):
            results[kind] = {
                "publish_per_s": await throughput(kind, folder, args.events),
                "e2e_same_process": await latency_in_process(kind, folder, args.rate, count),
            }
        results["embedded"]["e2e_other_process"] = await latency_cross_process(
            folder, args.rate, count
        )
    return results


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"publish throughput (events/s), {args.events} events per figure")
    print(f"  {'':18}{'memory':>12}{'embedded':>12}")
    for name in ("single", "concurrent", "batched", "service_batched"):
        memory, embedded = (results[k]["publish_per_s"][name] for k in ("memory", "embedded"))
        print(f"  {name:18}{memory:>12,.0f}{embedded:>12,.0f}")
    print(
        f"end-to-end latency at {args.rate:,.0f} events/s for {args.seconds}s (publish → handler)"
    )
    rows = [
        ("memory, same process", results["memory"]["e2e_same_process"]),
        ("embedded, same process", results["embedded"]["e2e_same_process"]),
        ("embedded, other process", results["embedded"]["e2e_other_process"]),
    ]
    for name, figures in rows:
        print(f"  {name:26} p50 {figures['p50_ms']:7.2f} ms   p99 {figures['p99_ms']:7.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000, help="events per throughput figure")
    parser.add_argument("--rate", type=float, default=1000.0, help="events/s for latency")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of a latency run")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument("--consume", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    runner = _runner()
    if args.consume is not None:
        runner(consume(args.consume, args.events))
        return
    results = runner(run(args))
    report(results, args)
    if args.json:
        print(json.dumps(results))


def _runner() -> Callable[[Any], Any]:
    # uvloop, as `lumi run` uses in every replica process
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run
    return uvloop.run  # type: ignore[no-any-return]


if __name__ == "__main__":
    main()
