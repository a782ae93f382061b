"""The loop's cost per event of Lumi's Kafka consume path alone, without a broker.

A :class:`GroupMember` and its runner are fed real ``confluent_kafka.Message`` objects (the
structured CloudEvents records ``bench/broker_bench.py`` consumes) in batches of 500, as the
consumer thread hands them over, with a no-op handler; commits go to a stand-in thread. Wall
time on a shared machine moves by 2x between runs, so compare instruction counts instead::

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python bench/kafka_consume_cost.py 10000 [--skip]

(``Collected`` of a run minus that of the same run with ``--skip``, which builds the messages
and stops, divided by the events). Without valgrind it prints the loop's CPU per event.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import types
from typing import Any

import confluent_kafka as ck

from lumi.brokers._kafka_consumer import GroupMember
from lumi.brokers.base import Backoff, Delivery
from lumi.model.context import new_id
from lumi.model.envelope import Envelope

HEADERS = [("content-type", b"application/cloudevents+json; charset=UTF-8")]


class Thread:
    """Stands in for the consumer thread: remembers the commits."""

    stopping = False

    def __init__(self) -> None:
        self.commits: dict[tuple[str, int], int] = {}

    def pause(self) -> None:
        pass

    def resume(self) -> None:
        pass

    def commit(self, topic: str, partition: int, offset: int) -> None:
        self.commits[topic, partition] = offset


async def main(events: int, skip: bool, as_json: bool) -> None:
    loop = asyncio.get_running_loop()
    broker: Any = types.SimpleNamespace(
        backoff=Backoff(), concurrency=32, window=1000, loop=loop, drain_timeout=5,
        forget=lambda s: None, name_of=lambda topic: topic,
    )  # fmt: skip
    done = asyncio.Event()
    count = 0

    async def handler(delivery: Delivery) -> None:
        nonlocal count
        count += 1
        if count == events:
            done.set()

    member = GroupMember(broker, "Bench.ticked", "Bench", handler, max_attempts=5, start="earliest")
    thread = Thread()
    member._thread = thread  # type: ignore[assignment]
    member._took([("Bench.ticked", 0), ("Bench.ticked", 1), ("Bench.ticked", 2)])
    messages = []
    for n in range(events):
        data = json.dumps({"n": n, "sent": time.time(), "note": "a small payload"}).encode()
        body = Envelope(id=new_id(), source="/bench", type="Bench.ticked", data=data).to_json()
        messages.append(
            ck.Message(
                topic="Bench.ticked", partition=n % 3, offset=n // 3, value=body, headers=HEADERS
            )
        )
    if skip:
        return
    started = time.thread_time()
    for start in range(0, events, 500):
        member._on_messages(messages[start : start + 500])
        await asyncio.sleep(0)
        while member._paused:
            await asyncio.sleep(0)
    await done.wait()
    for _ in range(3):
        await asyncio.sleep(0)  # the commit points' hand-over
    cpu = time.thread_time() - started
    expected = {("Bench.ticked", p): events // 3 + (1 if p < events % 3 else 0) for p in range(3)}
    assert thread.commits == expected, thread.commits
    if as_json:
        print(json.dumps({"events": events, "cpu_us_per_event": cpu / events * 1e6}))
    else:
        print(f"{events} events: {cpu / events * 1e6:.2f} µs of the loop's CPU per event")
    member._closed = True


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", type=int, nargs="?", default=20000)
    parser.add_argument("--skip", action="store_true", help="build the messages only")
    parser.add_argument("--json", action="store_true", help="print the figure as JSON")
    args = parser.parse_args()
    asyncio.run(main(args.events, args.skip, args.json))
