"""Logs for the dashboard: the app's JSON log files merged, filtered, and followed live.

History reads at most the last ``max_bytes`` of each file, so a long-running app's big logs never
make one request slow. The follower polls the files' sizes and publishes each new record on the
hub; each browser stream applies its own filter.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lumi.dashboard.hub import Hub
from lumi.runtime_services.observability import logfiles

Record = dict[str, Any]
LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


def level_of(record: Record) -> int:
    return LEVELS.get(str(record.get("level", "info")).lower(), 20)


def matcher(
    services: list[str], level: str | None, correlation: str | None, text: str | None = None
) -> Callable[[Record], bool]:
    """A predicate: any of ``services`` (all if empty), at least ``level``, this correlation id,
    and ``text`` in the message (case-insensitive)."""
    base = logfiles.matcher(services, correlation or None)
    floor = LEVELS.get((level or "debug").lower(), 10)
    needle = (text or "").lower()

    def keep(record: Record) -> bool:
        if not base(record) or level_of(record) < floor:
            return False
        return not needle or needle in str(record.get("msg", "")).lower()

    return keep


def _tail_lines(path: Path, max_bytes: int) -> list[str]:
    with path.open("rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - max_bytes))
        data = handle.read()
    lines = data.decode("utf-8", "replace").split("\n")
    if size > max_bytes:
        lines = lines[1:]  # the first one is probably cut
    return lines


def history(
    app_dir: Path, keep: Callable[[Record], bool], *, limit: int = 500, max_bytes: int = 2 << 20
) -> list[Record]:
    """The last ``limit`` kept records of every log file, merged by time."""
    streams = []
    for path in logfiles.log_files(app_dir):
        try:
            lines = _tail_lines(path, max_bytes)
        except OSError:
            continue
        records = (logfiles.parse(line) for line in lines)
        streams.append([r for r in records if r is not None and keep(r)])
    last: collections.deque[Record] = collections.deque(maxlen=limit)
    last.extend(heapq.merge(*streams, key=lambda r: str(r.get("ts", ""))))
    return list(last)


class LogFollower:
    """Publishes ``log`` messages on ``hub`` for every line appended to the app's log files."""

    def __init__(self, app_dir: Path, hub: Hub, *, poll: float = 0.2) -> None:
        self.app_dir = app_dir
        self.hub = hub
        self.poll = poll
        self._offsets: dict[Path, int] = {}
        self._partial: dict[Path, str] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        for path in logfiles.log_files(self.app_dir):
            with contextlib.suppress(OSError):
                self._offsets[path] = path.stat().st_size
        self._task = asyncio.create_task(self._run(), name="lumi-dashboard-logs")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.poll)
            if not self.hub.listeners:  # nobody is watching: skip what was written meanwhile
                self.skip()
                continue
            for record in self.read_new():
                self.hub.publish("log", record)

    def skip(self) -> None:
        """Move past everything written so far without reading it."""
        for path in logfiles.log_files(self.app_dir):
            with contextlib.suppress(OSError):
                self._offsets[path] = path.stat().st_size
            self._partial.pop(path, None)

    def read_new(self) -> list[Record]:
        """Records appended since the last look, in time order."""
        batch: list[Record] = []
        for path in logfiles.log_files(self.app_dir):
            offset = self._offsets.get(path, 0)
            try:
                size = path.stat().st_size
                if size < offset:  # truncated or replaced
                    offset = 0
                if size == offset:
                    continue
                with path.open("rb") as handle:
                    handle.seek(offset)
                    data = handle.read(size - offset)
            except OSError:
                continue
            self._offsets[path] = offset + len(data)
            chunk = self._partial.pop(path, "") + data.decode("utf-8", "replace")
            lines = chunk.split("\n")
            if lines[-1]:
                self._partial[path] = lines[-1]
            for line in lines[:-1]:
                record = logfiles.parse(line)
                if record is not None:
                    batch.append(record)
        batch.sort(key=lambda r: str(r.get("ts", "")))
        return batch
