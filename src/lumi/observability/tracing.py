"""Tracing: W3C trace context on every call and event, OpenTelemetry spans for sampled ones.

The trace context travels as a W3C ``traceparent`` (``00-<trace id>-<span id>-<flags>``) in
:class:`~lumi.context.Metadata`. Lumi decides sampling once, where a trace starts (a ratio,
``[tracing] sample_ratio``), and every hop keeps the decision from the ``sampled`` flag. Only a
sampled call pays for OpenTelemetry: an unsampled one just gets a fresh span id so logs and
downstream calls stay linked.

Spans are exported to the local SQLite store (:mod:`lumi.observability.spanstore`) and, when
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, over OTLP/HTTP to a collector.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, TraceFlags

log = logging.getLogger("lumi.tracing")

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_getrandbits = random.getrandbits


def parse_traceparent(value: str | None) -> tuple[int, int, bool] | None:
    """``(trace_id, parent span id, sampled)`` from a W3C traceparent, or None if malformed."""
    if value is None or len(value) < 55 or value[2] != "-" or value[35] != "-":
        return None
    try:
        trace_id = int(value[3:35], 16)
        span_id = int(value[36:52], 16)
        flags = int(value[53:55], 16)
    except ValueError:
        return None
    if trace_id == 0 or span_id == 0 or value[:2] == "ff":
        return None
    return trace_id, span_id, bool(flags & 1)


def format_traceparent(trace_id: int, span_id: int, sampled: bool) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-{'01' if sampled else '00'}"


def new_trace_id() -> int:
    return _getrandbits(128) or 1


def new_span_id() -> int:
    return _getrandbits(64) or 1


class Tracing:
    """The tracer of one process (or one in-process app) and its sampling ratio.

    ``provider`` is None when spans are not recorded (traceparents still propagate).
    """

    def __init__(self, provider: TracerProvider | None = None, sample_ratio: float = 1.0) -> None:
        if not 0.0 <= sample_ratio <= 1.0:
            raise ValueError(f"sample_ratio must be between 0 and 1, not {sample_ratio!r}")
        self.provider = provider
        self.sample_ratio = sample_ratio
        self.tracer = provider.get_tracer("lumi") if provider is not None else None

    def sample_new(self) -> bool:
        """The sampling decision for a trace that starts here."""
        ratio = self.sample_ratio
        return ratio >= 1.0 or (ratio > 0.0 and random.random() < ratio)

    def start(
        self,
        name: str,
        kind: SpanKind,
        parent: tuple[int, int, bool] | None,
        attributes: dict[str, Any],
    ) -> Span | None:
        """Start a span as a child of ``parent`` (a new root when None); None if unsampled."""
        tracer = self.tracer
        if tracer is None:
            return None
        if parent is None:
            ctx = otel_context.Context()
        else:
            trace_id, span_id, sampled = parent
            if not sampled:
                return None
            remote = SpanContext(trace_id, span_id, is_remote=True, trace_flags=_SAMPLED)
            ctx = trace.set_span_in_context(NonRecordingSpan(remote))
        return tracer.start_span(name, context=ctx, kind=kind, attributes=attributes)

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()


def traceparent_of(span: Span) -> str:
    ctx = span.get_span_context()
    return format_traceparent(ctx.trace_id, ctx.span_id, True)


def setup_tracing(
    *,
    service: str,
    store: Path | None,
    sample_ratio: float = 1.0,
    otlp_endpoint: str | None = None,
    batch: bool = True,
    set_global: bool = False,
    exporters: list[SpanExporter] | None = None,
) -> Tracing:
    """A :class:`Tracing` recording spans to ``store`` (SQLite) and to OTLP when an endpoint is
    given (default: ``OTEL_EXPORTER_OTLP_ENDPOINT``)."""
    provider = TracerProvider(
        sampler=ALWAYS_ON, resource=Resource.create({"service.name": service})
    )
    chosen: list[SpanExporter] = list(exporters or [])
    if store is not None:
        from lumi.observability.spanstore import SqliteSpanExporter

        chosen.append(SqliteSpanExporter(store))
    endpoint = otlp_endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # From the environment the exporter appends /v1/traces itself; a given base does not.
        chosen.append(
            OTLPSpanExporter(endpoint=f"{otlp_endpoint.rstrip('/')}/v1/traces")
            if otlp_endpoint
            else OTLPSpanExporter()
        )
        log.info("exporting spans over OTLP to %s", endpoint)
    for exporter in chosen:
        processor = (
            BatchSpanProcessor(exporter, schedule_delay_millis=500)
            if batch
            else SimpleSpanProcessor(exporter)
        )
        provider.add_span_processor(processor)
    if set_global:
        trace.set_tracer_provider(provider)
    return Tracing(provider, sample_ratio)
