"""Run ``event_worker.py`` processes and read what they did, for the embedded-log tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lumi.brokers.embedded import EmbeddedBroker
from lumi.model.envelope import Envelope
from lumi.testing import wait_until
from tests.integration.event_worker import Made
from tests.integration.harness import alive

WORKER = Path(__file__).with_name("event_worker.py")
TOPIC = "Producer.made"


class Worker:
    """``event_worker.py`` in a subprocess, its stdout collected line by line."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def is_ready(self) -> bool:
        """Whether it said "ready"; AssertionError with its stderr if it exited instead."""
        if self.proc.poll() is not None:
            assert self.proc.stderr is not None
            raise AssertionError(f"worker exited early:\n{self.proc.stderr.read()}")
        return "ready" in self.lines

    async def ready(self) -> None:
        """Wait (without blocking the event loop) until the worker is ready."""
        await wait_until(self.is_ready, timeout=60, message="the worker to be ready")

    def kill(self) -> None:
        """SIGKILL: no handler, no cleanup, no flush of anything not yet written."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._reader.join(timeout=5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    @property
    def pid(self) -> int:
        return self.proc.pid


@contextmanager
def running_workers() -> Iterator[list[Worker]]:
    """Worker processes started inside the block; all are killed at its end."""
    started: list[Worker] = []
    try:
        yield started
    finally:
        for worker in started:
            worker.kill()
    assert not any(alive(w.pid) for w in started)


def events(count: int, *, hang: int | None = None) -> list[Envelope]:
    made = [Made(n=n, hang=n == hang) for n in range(count)]
    return [
        Envelope(id=f"event-{m.n}", source="/test", type=TOPIC, data=m.model_dump_json().encode())
        for m in made
    ]


def log_lines(log_file: Path) -> list[list[str]]:
    if not log_file.exists():
        return []
    return [line.split() for line in log_file.read_text().splitlines() if line]


async def publish(app_dir: Path, envelopes: list[Envelope]) -> None:
    async with EmbeddedBroker(app_dir / ".lumi" / "events.db") as broker:
        await broker.publish(TOPIC, envelopes)
