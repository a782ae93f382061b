"""A real OS process on an app's embedded event log, for crash tests (not a test module).

    python event_worker.py consume APP_DIR LOG_FILE [POLL]  # a replica of the Consumer service
    python event_worker.py publish APP_DIR COUNT            # publishes COUNT events, one at a time

The consumer appends ``start <event id> <attempt> <unix time>`` when a handler begins and
``done <event id>`` when it ends to LOG_FILE (POLL: its fallback poll interval in seconds); an event with ``hang=true`` hangs on its first attempt, so the
test can kill the process in the middle of a handler. The publisher prints each event's id as
soon as ``publish`` returned. Both print ``ready`` once they are running.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import TextIO

import pydantic

import lumi
from lumi.brokers import create_broker
from lumi.brokers.base import Backoff, Broker


class Made(pydantic.BaseModel):
    n: int
    hang: bool = False


class Producer(lumi.Service):
    made = lumi.event(Made)


class Consumer(lumi.Service):
    log: TextIO  # set by main() before the app starts

    @lumi.subscribe(Producer.made, max_attempts=5)
    async def on_made(self, event: Made) -> None:
        ctx = lumi.context()
        assert ctx is not None
        self.write(f"start {ctx.event_id} {ctx.attempt} {time.time()}")
        if event.hang and ctx.attempt == 1:
            await asyncio.Event().wait()  # until the test kills this process
        await asyncio.sleep(0.001)
        self.write(f"done {ctx.event_id}")

    def write(self, line: str) -> None:
        self.log.write(line + "\n")
        self.log.flush()


def broker(app_dir: Path, poll_interval: float = 1.0) -> Broker:
    # A one-second lease: a killed replica's events come back quickly. LUMI_TEST_EVENTS names
    # another broker (with its own short lease) for the network brokers' crash tests.
    url = os.environ.get("LUMI_TEST_EVENTS")
    if url:
        return create_broker(url, app_dir=app_dir, backoff=Backoff(0.05))
    return create_broker(
        "embedded?lease=1", app_dir=app_dir, backoff=Backoff(0.05), poll_interval=poll_interval
    )


async def consume(app_dir: Path, log_file: Path, poll_interval: float) -> None:
    with log_file.open("a") as log:
        Consumer.log = log
        async with lumi.App([Consumer], broker=broker(app_dir, poll_interval)):
            print("ready", flush=True)
            await asyncio.Event().wait()


async def publish(app_dir: Path, count: int) -> None:
    async with lumi.App([Producer], broker=broker(app_dir)) as app:
        producer = app.service(Producer)
        print("ready", flush=True)
        for n in range(count):
            event_id = await producer.made.publish(Made(n=n))
            print(event_id, flush=True)


def main() -> None:
    mode, app_dir = sys.argv[1], Path(sys.argv[2])
    if mode == "consume":
        poll = float(sys.argv[4]) if len(sys.argv) > 4 else 1.0
        asyncio.run(consume(app_dir, Path(sys.argv[3]), poll))
    elif mode == "publish":
        asyncio.run(publish(app_dir, int(sys.argv[3])))
    else:
        raise SystemExit(f"unknown mode {mode!r}: use consume or publish")


if __name__ == "__main__":
    main()
