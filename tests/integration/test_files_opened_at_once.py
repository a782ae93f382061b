"""The SQLite files every replica of ``lumi run`` opens as it starts (the embedded event log,
the span store): many processes opening a new one at the same instant all succeed.

While one connection switches a new file to WAL mode or recovers its WAL, others opening it get
"database is locked" — SQLITE_BUSY without a call to the busy handler, or the extended
SQLITE_BUSY_RECOVERY — and must wait it out (before, now and then a replica of the example shop
failed to start, and a replica's first spans were dropped)."""

from __future__ import annotations

import asyncio
import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from lumi.brokers.embedded import EmbeddedBroker
from lumi.runtime_services.observability.spanstore import SqliteSpanExporter

pytestmark = pytest.mark.slow

OPENERS, TRIALS = 6, 30  # processes; fresh files each of them opens at the same instant
SPAN = ("0" * 31 + "1", "0" * 15 + "1", None, "GET", "Svc", "server", 1, 2, "OK", None, "{}")


async def _open_log(path: Path) -> None:
    async with EmbeddedBroker(path):
        pass


def _open_store(path: Path) -> None:
    exporter = SqliteSpanExporter(path)
    try:
        if not exporter._write([SPAN]):
            raise RuntimeError("the span was not stored")
    finally:
        exporter.shutdown()


def _open_each_at(kind: str, paths: list[str], together: Any) -> None:
    """In a process of its own: open each file of ``paths`` as the other processes do (they
    all pass ``together``, a barrier, first), as starting replicas do; exit 1 naming the first
    failure."""
    for path in paths:
        together.wait(timeout=60)
        try:
            if kind == "log":
                asyncio.run(_open_log(Path(path)))
            else:
                _open_store(Path(path))
        except Exception as exc:
            print(f"{path}: {exc}", flush=True)
            together.abort()  # the others stop at their next wait instead of timing out
            raise SystemExit(1) from None


@pytest.mark.parametrize(("kind", "name"), [("log", "events.db"), ("store", "spans.db")])
def test_processes_opening_a_new_file_at_once_all_succeed(
    kind: str, name: str, tmp_path: Path
) -> None:
    """Six processes open each of 30 fresh files at the same instant: every open succeeds."""
    paths = [str(tmp_path / f"app{k}" / ".lumi" / name) for k in range(TRIALS)]
    for path in paths:
        Path(path).parent.mkdir(parents=True)
    context = multiprocessing.get_context("spawn")  # no fork of pytest's running loop
    together = context.Barrier(OPENERS)
    procs = [
        context.Process(target=_open_each_at, args=(kind, paths, together)) for _ in range(OPENERS)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert [proc.exitcode for proc in procs] == [0] * OPENERS
