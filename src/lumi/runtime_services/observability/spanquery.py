"""Reading the local span store (``<app>/.lumi/traces.db``) back: one trace, recent traces.

Only ``sqlite3``: ``lumi trace`` and the dashboard read spans without loading OpenTelemetry
(the writing side is :mod:`lumi.runtime_services.observability.spanstore`).

A trace is named by its trace id or by the correlation id of its request, or by a prefix of
either — ids are long, and the docs and ``lumi trace``'s own list show their first characters —
as long as the prefix names one trace or one correlation id (:class:`AmbiguousId` otherwise).
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path
from typing import Any

_ELLIPSES = ("…", "...")


@dataclasses.dataclass
class StoredSpan:
    """One span read back from the store."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    service: str | None
    kind: str
    start_ns: int
    end_ns: int
    status: str
    correlation_id: str | None
    attributes: dict[str, Any]
    children: list[StoredSpan] = dataclasses.field(default_factory=list)

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


class AmbiguousId(ValueError):
    """A prefix that starts several trace ids or correlation ids."""

    def __init__(self, prefix: str, matches: list[str]) -> None:
        shown = ", ".join(matches[:5]) + (", …" if len(matches) > 5 else "")
        super().__init__(
            f"{prefix!r} starts {len(matches)} trace or correlation ids ({shown}); give more of it"
        )
        self.matches = matches


def clean_id(ident: str) -> str:
    """``ident`` as typed or pasted: surrounding space and a trailing ellipsis removed."""
    ident = ident.strip()
    for ellipsis in _ELLIPSES:
        ident = ident.removesuffix(ellipsis)
    return ident.strip()


def _open(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)


def trace_ids(path: Path, ident: str) -> list[str]:
    """The trace ids ``ident`` names: a trace id, a correlation id (every trace of that
    request), or a prefix of exactly one of them. Raises :class:`AmbiguousId`."""
    ident = clean_id(ident)
    if not ident or not path.is_file():
        return []
    conn = _open(path)
    try:
        exact = [
            row[0]
            for row in conn.execute(
                "SELECT DISTINCT trace_id FROM spans WHERE trace_id = ? OR correlation_id = ?",
                (ident.lower(), ident),
            )
        ]
        if exact:
            return exact
        # substr rather than LIKE: a correlation id may hold % or _
        size = len(ident)
        traces = [
            row[0]
            for row in conn.execute(
                "SELECT DISTINCT trace_id FROM spans WHERE substr(trace_id, 1, ?) = ?",
                (size, ident.lower()),
            )
        ]
        requests = [
            row[0]
            for row in conn.execute(
                "SELECT DISTINCT correlation_id FROM spans WHERE substr(correlation_id, 1, ?) = ?",
                (size, ident),
            )
        ]
        of_request = (
            [
                row[0]
                for row in conn.execute(
                    "SELECT DISTINCT trace_id FROM spans WHERE correlation_id = ?", requests[:1]
                )
            ]
            if len(requests) == 1
            else []
        )
        if len(traces) > 1 or len(requests) > 1 or (traces and of_request and traces != of_request):
            raise AmbiguousId(ident, sorted(traces) + sorted(requests))
        return traces or of_request
    finally:
        conn.close()


def read_trace(path: Path, ident: str) -> list[StoredSpan]:
    """Every span of the trace(s) ``ident`` names (see :func:`trace_ids`), by start."""
    traces = trace_ids(path, ident)
    if not traces:
        return []
    conn = _open(path)
    try:
        marks = ",".join("?" * len(traces))
        rows = conn.execute(
            f"SELECT * FROM spans WHERE trace_id IN ({marks}) ORDER BY start_ns", traces
        ).fetchall()
    finally:
        conn.close()
    return [_stored(row) for row in rows]


def recent_traces(path: Path, limit: int = 20) -> list[StoredSpan]:
    """The root spans of the most recent traces (for ``lumi trace`` without an id)."""
    if not path.is_file():
        return []
    conn = _open(path)
    try:
        rows = conn.execute(
            "SELECT * FROM spans WHERE parent_id IS NULL ORDER BY start_ns DESC LIMIT ?", (limit,)
        ).fetchall()
    finally:
        conn.close()
    return [_stored(row) for row in rows]


def _stored(row: tuple[Any, ...]) -> StoredSpan:
    return StoredSpan(
        trace_id=row[0],
        span_id=row[1],
        parent_id=row[2],
        name=row[3],
        service=row[4],
        kind=row[5],
        start_ns=row[6],
        end_ns=row[7],
        status=row[8],
        correlation_id=row[9],
        attributes=json.loads(row[10]) if row[10] else {},
    )


def build_tree(spans: list[StoredSpan]) -> list[StoredSpan]:
    """Link spans to their parents; returns the roots (spans whose parent is not stored)."""
    by_id = {span.span_id: span for span in spans}
    roots: list[StoredSpan] = []
    for span in spans:
        span.children = []
    for span in spans:
        parent = by_id.get(span.parent_id) if span.parent_id else None
        if parent is None or parent is span:
            roots.append(span)
        else:
            parent.children.append(span)
    return roots
