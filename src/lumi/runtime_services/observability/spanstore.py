"""The local span store: finished spans in SQLite (``<app>/.lumi/traces.db``).

Every service process of an app writes its spans there through a batch processor (the exporter
runs in the processor's thread, with its own connection; SQLite's WAL mode and a busy timeout let
several processes write at once). ``lumi trace ID`` reads one trace back — by trace id or by
correlation id — with no collector to run (reading is :mod:`.spanquery`, which needs no
OpenTelemetry).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lumi.paths import private_file
from lumi.retrying import while_locked
from lumi.runtime_services.observability.spanquery import (
    StoredSpan,
    build_tree,
    read_trace,
    recent_traces,
)
from lumi.runtime_services.observability.tracing import Span

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExportResult

__all__ = [
    "SqliteSpanExporter",
    "StoredSpan",
    "build_tree",
    "read_trace",
    "recent_traces",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_id TEXT,
    name TEXT NOT NULL,
    service TEXT,
    kind TEXT,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    status TEXT,
    correlation_id TEXT,
    attributes TEXT,
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX IF NOT EXISTS spans_correlation ON spans (correlation_id);
CREATE INDEX IF NOT EXISTS spans_start ON spans (start_ns);
"""


def _connect(path: Path) -> sqlite3.Connection:
    private_file(path)  # SQLite gives its -wal and -shm files the database file's mode
    conn = sqlite3.connect(path, timeout=10.0, check_same_thread=False)
    try:
        # Replicas open the store at once; SQLite's busy handler does not cover every lock here.
        while_locked(lambda: conn.execute("PRAGMA journal_mode=WAL"), 10.0)
        conn.execute("PRAGMA synchronous=NORMAL")
        while_locked(lambda: conn.executescript(_SCHEMA), 10.0)
    except BaseException:
        conn.close()
        raise
    return conn


class SqliteSpanExporter:
    """Appends finished spans to the local store: Lumi's own spans (:meth:`export_lite`) and,
    as an OpenTelemetry span exporter, SDK spans (:meth:`export`). It does not subclass the
    SDK's ``SpanExporter`` so that a replica need not load the SDK (duck typing is all the SDK's
    processors ask of an exporter)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        from opentelemetry.sdk.trace.export import SpanExportResult

        ok = self._write([_row(span) for span in spans])
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def export_lite(self, spans: Sequence[Span], service: str) -> None:
        """Write Lumi's own spans directly (no OpenTelemetry objects on the way)."""
        self._write([_lite_row(span, service) for span in spans])

    def _write(self, rows: list[tuple[Any, ...]]) -> bool:
        try:
            with self._lock:
                if self._conn is None:
                    self._conn = _connect(self.path)
                with self._conn:
                    self._conn.executemany(
                        "INSERT OR REPLACE INTO spans VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows
                    )
        except sqlite3.Error:
            return False
        return True

    def shutdown(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _lite_row(span: Span, default_service: Any) -> tuple[Any, ...]:
    attributes = span.attributes
    service = attributes.get("lumi.service", default_service)
    return (
        f"{span.trace_id:032x}",
        f"{span.span_id:016x}",
        None if span.parent_id is None else f"{span.parent_id:016x}",
        span.name,
        None if service is None else str(service),
        span.kind.name.lower(),
        span.start_ns,
        span.end_ns,
        span.code,
        attributes.get("lumi.correlation_id"),
        json.dumps(attributes, default=str, separators=(",", ":")),
    )


def _row(span: ReadableSpan) -> tuple[Any, ...]:
    ctx = span.get_span_context()
    attributes = dict(span.attributes or {})
    service = span.resource.attributes.get("service.name") if span.resource else None
    service = attributes.get("lumi.service", service)
    return (
        f"{ctx.trace_id:032x}" if ctx else "",
        f"{ctx.span_id:016x}" if ctx else "",
        f"{span.parent.span_id:016x}" if span.parent else None,
        span.name,
        None if service is None else str(service),
        span.kind.name.lower(),
        span.start_time or 0,
        span.end_time or span.start_time or 0,
        str(attributes.get("lumi.code", "OK")),
        attributes.get("lumi.correlation_id"),
        json.dumps(attributes, default=str, separators=(",", ":")),
    )
