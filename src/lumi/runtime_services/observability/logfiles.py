"""Reading an app's logs: ``<app>/.lumi/logs/*.log``, one JSON object per line.

Each service process writes its own file (``<service>.log``, ``<service>-<n>.log`` for replica
n > 0). :func:`merged` interleaves every file by timestamp and filters by service and correlation
id; :func:`follow` keeps reading as lines are appended (``lumi logs --follow``).
"""

from __future__ import annotations

import heapq
import json
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from rich.text import Text

from lumi.paths import AppPaths

Record = dict[str, Any]

_LEVEL_STYLES = {
    "debug": "dim",
    "info": "green",
    "warning": "yellow",
    "error": "bold red",
    "critical": "bold red reverse",
}
_SHOWN_FIRST = ("ts", "level", "service", "replica", "msg")
_QUIET = ("logger", "trace_id", "span_id")


def log_dir(app_dir: Path) -> Path:
    return AppPaths(app_dir).logs


def log_files(app_dir: Path) -> list[Path]:
    """Every log file of the app, sorted by name."""
    folder = log_dir(app_dir)
    return sorted(folder.glob("*.log")) if folder.is_dir() else []


def parse(line: str) -> Record | None:
    """One log line as a record, or None if it is not a JSON object."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def read(path: Path) -> Iterator[Record]:
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            record = parse(line)
            if record is not None:
                yield record


def matcher(
    services: Iterable[str] = (), correlation: str | None = None
) -> Callable[[Record], bool]:
    """A predicate keeping records of ``services`` (any, if empty) with ``correlation``."""
    wanted = set(services)

    def keep(record: Record) -> bool:
        if wanted and record.get("service") not in wanted:
            return False
        return correlation is None or record.get("correlation_id") == correlation

    return keep


def _ts(record: Record) -> str:
    return str(record.get("ts", ""))


def merged(files: Iterable[Path], keep: Callable[[Record], bool]) -> Iterator[Record]:
    """Every kept record of ``files``, in timestamp order (each file is already in order)."""
    streams = [(r for r in read(path) if keep(r)) for path in files]
    return heapq.merge(*streams, key=_ts)


def follow(
    app_dir: Path,
    keep: Callable[[Record], bool],
    *,
    poll: float = 0.2,
    from_start: bool = False,
    stop: Callable[[], bool] = lambda: False,
) -> Iterator[Record]:
    """Records as they are appended to any log file of the app (new files included)."""
    offsets: dict[Path, int] = {}
    if not from_start:
        offsets = {path: path.stat().st_size for path in log_files(app_dir)}
    partial: dict[Path, str] = {}
    while not stop():
        batch: list[Record] = []
        for path in log_files(app_dir):
            offset = offsets.get(path, 0)
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            if size < offset:  # truncated or replaced: start over
                offset = 0
            if size == offset:
                continue
            with path.open(encoding="utf-8", errors="replace") as handle:
                handle.seek(offset)
                chunk = partial.pop(path, "") + handle.read()
                offsets[path] = handle.tell()
            lines = chunk.split("\n")
            if lines[-1]:
                partial[path] = lines[-1]  # a line still being written
            for line in lines[:-1]:
                record = parse(line)
                if record is not None and keep(record):
                    batch.append(record)
        batch.sort(key=_ts)
        yield from batch
        if not batch:
            time.sleep(poll)


def render(record: Record) -> Text:
    """One record as a readable line: time, service[replica], level, message, other fields."""
    text = Text()
    ts = _ts(record)
    text.append(ts[11:23] if len(ts) >= 23 else ts, style="dim")
    service = record.get("service") or "-"
    replica = record.get("replica")
    text.append(f" {service}" + (f"[{replica}]" if replica not in (None, 0) else ""), "cyan")
    level = str(record.get("level", "info")).lower()
    text.append(f" {level:<7}", _LEVEL_STYLES.get(level, ""))
    text.append(f" {record.get('msg', '')}", "bold")
    for key, value in record.items():
        if key in _SHOWN_FIRST or key in _QUIET or key == "exception":
            continue
        text.append(f" {key}=", "dim")
        text.append(value if isinstance(value, str) else json.dumps(value, default=str))
    if record.get("exception"):
        text.append("\n" + str(record["exception"]), "red")
    return text
