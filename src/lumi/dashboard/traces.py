"""Traces for the dashboard, read from the app's span store (``<app>/.lumi/traces.db``)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import Any

from lumi.dashboard.hub import Hub
from lumi.runtime_services.observability.spanquery import (
    AmbiguousId,
    StoredSpan,
    build_tree,
    read_trace,
)


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)


def recent(path: Path, *, limit: int = 50, query: str = "") -> list[dict[str, Any]]:
    """The latest traces (newest first), each summarised: root span, duration, status, the
    services it crossed; ``query`` keeps traces whose trace or correlation id starts with it."""
    if not path.is_file():
        return []
    where, args = "", []
    if query:
        where = "WHERE trace_id LIKE ? OR correlation_id LIKE ?"
        args = [f"{query.lower()}%", f"{query}%"]
    conn = _connect(path)
    try:
        rows = conn.execute(
            f"""SELECT trace_id, MIN(start_ns), MAX(end_ns), COUNT(*),
                       GROUP_CONCAT(DISTINCT service), MAX(correlation_id),
                       SUM(CASE WHEN status = 'OK' THEN 0 ELSE 1 END)
                FROM spans WHERE trace_id IN (
                    SELECT trace_id FROM spans {where}
                    GROUP BY trace_id ORDER BY MIN(start_ns) DESC LIMIT ?)
                GROUP BY trace_id ORDER BY MIN(start_ns) DESC""",
            [*args, limit],
        ).fetchall()
        ids = [row[0] for row in rows]
        roots: dict[str, tuple[str, str, str]] = {}
        if ids:
            marks = ",".join("?" * len(ids))
            for trace_id, name, service, status in conn.execute(
                f"""SELECT trace_id, name, service, status FROM spans
                    WHERE trace_id IN ({marks}) ORDER BY start_ns DESC""",
                ids,
            ):
                roots[trace_id] = (name, service or "", status)  # the earliest span wins
    except sqlite3.Error:
        return []
    finally:
        conn.close()
    return [
        {
            "trace_id": trace_id,
            "start_ns": start,
            "ms": round((end - start) / 1e6, 3),
            "spans": count,
            "services": sorted(filter(None, (services or "").split(","))),
            "correlation_id": correlation,
            "errors": errors,
            "root": roots.get(trace_id, ("", "", ""))[0],
            "root_service": roots.get(trace_id, ("", "", ""))[1],
            "status": roots.get(trace_id, ("", "", "OK"))[2],
        }
        for trace_id, start, end, count, services, correlation, errors in rows
    ]


def detail(path: Path, ident: str) -> dict[str, Any] | None:
    """One trace (by trace id or correlation id) as a flat list of spans in tree order, each
    with its depth and its offset from the start of the trace; None if it is not stored."""
    try:
        spans = read_trace(path, ident.strip())
    except sqlite3.Error:  # e.g. busy while a writer checkpoints: "not yet", ask again
        return None
    except AmbiguousId:  # a prefix of several ids names no one trace
        return None
    if not spans:
        return None
    start = min(s.start_ns for s in spans)
    end = max(s.end_ns for s in spans)
    ordered: list[dict[str, Any]] = []

    def add(span: StoredSpan, depth: int) -> None:
        ordered.append(
            {
                "span_id": span.span_id,
                "parent_id": span.parent_id,
                "trace_id": span.trace_id,
                "name": span.name,
                "service": span.service,
                "kind": span.kind,
                "status": span.status,
                "depth": depth,
                "offset_ms": round((span.start_ns - start) / 1e6, 3),
                "ms": round(span.duration_ms, 3),
                "attributes": span.attributes,
            }
        )
        for child in sorted(span.children, key=lambda s: s.start_ns):
            add(child, depth + 1)

    for root in sorted(build_tree(spans), key=lambda s: s.start_ns):
        add(root, 0)
    return {
        "trace_id": spans[0].trace_id,
        "trace_ids": sorted({s.trace_id for s in spans}),
        "correlation_id": next((s.correlation_id for s in spans if s.correlation_id), None),
        "ms": round((end - start) / 1e6, 3),
        "start_ns": start,
        "services": sorted({s.service for s in spans if s.service}),
        "spans": ordered,
    }


class TraceFeed:
    """Publishes ``traces`` (the recent list) on ``hub`` whenever the span store grows."""

    def __init__(self, path: Path, hub: Hub, *, poll: float = 1.0) -> None:
        self.path = path
        self.hub = hub
        self.poll = poll
        self._mark: tuple[Any, ...] | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="lumi-dashboard-traces")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _current_mark(self) -> tuple[Any, ...] | None:
        if not self.path.is_file():
            return None
        conn = _connect(self.path)
        try:
            row: tuple[Any, ...] = conn.execute(
                "SELECT COUNT(*), MAX(end_ns) FROM spans"
            ).fetchone()
            return row
        except sqlite3.Error:
            return None
        finally:
            conn.close()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.poll)
            if not self.hub.listeners:
                continue
            mark = await asyncio.to_thread(self._current_mark)
            if mark != self._mark:
                self._mark = mark
                found = await asyncio.to_thread(recent, self.path, limit=50)
                self.hub.publish("traces", found)
