"""A timeline of Lumi's Kafka consume path against a real broker: when the consumer thread
takes a batch from librdkafka, when the loop gets it (with how many events were still waiting
there, and whether the member had paused the thread), and when the member resumes the thread.

It starts tansu, fills a topic with ``events`` events through Lumi's broker (as
``bench/broker_bench.py`` does), consumes it with one group member and a no-op handler, and
prints one line per step in milliseconds from the first::

    python bench/kafka_consume_timeline.py 20000

A hand-over that finds ``waiting=0`` means the loop ran out of work before the thread's next
batch reached it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the engine starters live with the tests
sys.path.insert(0, str(ROOT / "bench"))

import broker_bench as bench  # noqa: E402

from lumi.brokers import _kafka_client, _kafka_consumer  # noqa: E402

steps: list[tuple[float, str]] = []


class Traced:
    """A consumer whose ``consume`` calls that return records are noted."""

    def __init__(self, consumer: Any) -> None:
        self._consumer = consumer

    def consume(self, *args: Any) -> list[Any]:
        records: list[Any] = self._consumer.consume(*args)
        if records:
            steps.append((time.perf_counter(), f"thread took {len(records)}"))
        return records

    def poll(self, *args: Any) -> Any:
        record = self._consumer.poll(*args)
        if record is not None:
            steps.append((time.perf_counter(), "thread polled 1"))
        return record

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)


def trace() -> None:
    on_messages = _kafka_consumer.GroupMember._on_messages
    resume = _kafka_client.ConsumerThread.resume
    init = _kafka_client.ConsumerThread.__init__

    def traced_on_messages(self: Any, messages: list[Any]) -> None:
        note = f"loop got {len(messages)} waiting={self._waiting()} paused={self._paused}"
        steps.append((time.perf_counter(), note))
        on_messages(self, messages)

    def traced_resume(self: Any) -> None:
        steps.append((time.perf_counter(), "loop resumed the thread"))
        resume(self)

    def traced_init(self: Any, consumer: Any, *args: Any, **kwargs: Any) -> None:
        init(self, Traced(consumer), *args, **kwargs)

    _kafka_consumer.GroupMember._on_messages = traced_on_messages  # type: ignore[method-assign]
    _kafka_client.ConsumerThread.resume = traced_resume  # type: ignore[method-assign]
    _kafka_client.ConsumerThread.__init__ = traced_init  # type: ignore[method-assign]


async def main(url: str, events: int) -> None:
    await bench.lumi_consume(url, min(events, 2000))  # warm-up, not shown
    trace()
    steps.clear()
    rate = await bench.lumi_consume(url, events)
    shown = [s for s in steps if not s[1].startswith("thread polled") or s is steps[-1]]
    start = next((t for t, note in shown if note.startswith("thread took")), shown[0][0])
    for t, note in shown:
        if t >= start:
            print(f"{(t - start) * 1000:9.1f} ms  {note}")
    print(f"{rate:,.0f} events/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", type=int, nargs="?", default=20000)
    args = parser.parse_args()
    with bench.engine("kafka") as url:
        asyncio.run(main(url, args.events))
