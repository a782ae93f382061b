"""Tracing: W3C trace context on every call and event, spans for sampled ones.

The trace context travels as a W3C ``traceparent`` (``00-<trace id>-<span id>-<flags>``) in
:class:`~lumi.model.context.Metadata`. Lumi decides sampling once, where a trace starts (a ratio,
``[tracing] sample_ratio``), and every hop keeps the decision from the ``sampled`` flag. An
unsampled call only gets a fresh span id, so logs and downstream calls stay linked.

A sampled call records a :class:`Span`: a few slots filled on the event loop (a couple of µs,
where an OpenTelemetry SDK span costs tens). Finished spans are queued and a background thread
hands them in batches to the exporters: the local SQLite store
(:mod:`lumi.runtime_services.observability.spanstore`), OTLP/HTTP when
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, or
any OpenTelemetry ``SpanExporter`` (spans become SDK ``ReadableSpan`` objects there, off the
hot path). Inside a sampled handler the OpenTelemetry context names the current span, so spans a
user makes with the OpenTelemetry API nest under it.

Only the OpenTelemetry API is imported up front: the SDK (~25 modules, ~1 MiB of every replica,
``bench/replica_bench.py``) is loaded when something needs it — an OpenTelemetry exporter, or
the first tracer user code asks the global provider for.
"""

from __future__ import annotations

import collections
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan

log = logging.getLogger("lumi.tracing")


class Exporter(Protocol):
    """What Lumi asks of a span exporter: an OpenTelemetry SDK ``SpanExporter`` is one. One that
    also has ``export_lite(spans, service)`` is handed Lumi's own :class:`Span` objects."""

    def export(self, spans: Sequence[ReadableSpan]) -> Any: ...

    def shutdown(self) -> None: ...


_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_getrandbits = random.getrandbits
_time_ns = time.time_ns


# W3C trace context: lowercase hex, version ff invalid, all-zero ids invalid; a later version
# may append fields after the flags.
_TRACEPARENT = re.compile(
    r"(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}(?:-|$)"
)
_SAMPLED_DIGITS = frozenset("13579bdf")  # the last hex digit of flags with the sampled bit


def traceparent_sampled(value: str | None) -> bool | None:
    """The sampled flag of a well-formed traceparent, None if absent or malformed — without
    building integers (the hot path of an unsampled call needs only this)."""
    if value is None or _TRACEPARENT.match(value) is None:
        return None
    return value[54] in _SAMPLED_DIGITS


def parse_traceparent(value: str | None) -> tuple[int, int, bool] | None:
    """``(trace_id, parent span id, sampled)`` from a W3C traceparent, or None if malformed."""
    sampled = traceparent_sampled(value)
    if sampled is None or value is None:
        return None
    return int(value[3:35], 16), int(value[36:52], 16), sampled


def format_traceparent(trace_id: int, span_id: int, sampled: bool) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-{'01' if sampled else '00'}"


def new_trace_id() -> int:
    return _getrandbits(128) or 1


def new_span_id() -> int:
    return _getrandbits(64) or 1


class Span:
    """One sampled span, as recorded on the hot path."""

    __slots__ = (
        "attributes",
        "code",
        "end_ns",
        "kind",
        "name",
        "parent_id",
        "span_id",
        "start_ns",
        "trace_id",
    )

    def __init__(
        self,
        name: str,
        kind: SpanKind,
        trace_id: int,
        parent_id: int | None,
        attributes: dict[str, Any],
    ) -> None:
        self.name = name
        self.kind = kind
        self.trace_id = trace_id
        self.span_id = new_span_id()
        self.parent_id = parent_id
        self.attributes = attributes
        self.start_ns = _time_ns()
        self.end_ns = 0
        self.code = "OK"

    @property
    def traceparent(self) -> str:
        return format_traceparent(self.trace_id, self.span_id, True)

    def otel_context(self) -> Any:
        """An OpenTelemetry context whose current span is this one (for user spans)."""
        ctx = SpanContext(self.trace_id, self.span_id, is_remote=False, trace_flags=_SAMPLED)
        return trace.set_span_in_context(NonRecordingSpan(ctx))

    def to_otel(self, resource: Resource) -> ReadableSpan:
        """The span as an OpenTelemetry SDK span, for OpenTelemetry exporters."""
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        from opentelemetry.trace.status import Status, StatusCode

        attributes = dict(self.attributes)
        attributes["lumi.code"] = self.code
        ctx = SpanContext(self.trace_id, self.span_id, is_remote=False, trace_flags=_SAMPLED)
        parent = (
            None
            if self.parent_id is None
            else SpanContext(self.trace_id, self.parent_id, is_remote=True, trace_flags=_SAMPLED)
        )
        status = Status(StatusCode.OK) if self.code == "OK" else Status(StatusCode.ERROR, self.code)
        return ReadableSpan(
            name=self.name,
            context=ctx,
            parent=parent,
            resource=resource,
            attributes=attributes,
            kind=self.kind,
            status=status,
            start_time=self.start_ns,
            end_time=self.end_ns,
            instrumentation_scope=InstrumentationScope("lumi"),
        )


class _Shipper(threading.Thread):
    """Drains finished spans in batches to the exporters, off the event loop."""

    def __init__(self, tracing: Tracing, interval: float) -> None:
        super().__init__(name="lumi-span-export", daemon=True)
        self.tracing = tracing
        self.interval = interval
        self.wake = threading.Event()
        self.stopping = False

    def run(self) -> None:
        while not self.stopping:
            self.wake.wait(self.interval)
            self.wake.clear()
            self.tracing.flush()
        self.tracing.flush()


class Tracing:
    """The tracer of one process (or one in-process app): sampling ratio and exporters.

    With no exporters nothing is recorded (traceparents still propagate). ``batch=False``
    exports each span as it ends (for tests).
    """

    def __init__(
        self,
        exporters: list[Exporter] | None = None,
        sample_ratio: float = 1.0,
        *,
        max_per_second: float = 0.0,
        service: str = "lumi",
        batch: bool = True,
        interval: float = 0.5,
        max_queue: int = 20_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0.0 <= sample_ratio <= 1.0:
            raise ValueError(f"sample_ratio must be between 0 and 1, not {sample_ratio!r}")
        self.exporters = list(exporters or [])
        self.sample_ratio = sample_ratio
        # A token bucket on new traces: all of a quiet app's requests are traced, while under
        # load the span store's cost stays bounded (writing every span of 10k requests/s to
        # SQLite took a fifth of a replica's CPU).
        self.max_per_second = max_per_second
        self._clock = clock
        self._tokens = max_per_second
        self._refilled = clock()
        self.recording = bool(self.exporters)
        self.service = service
        self._resource: Resource | None = None
        self._queue: collections.deque[Span] = collections.deque(maxlen=max_queue)
        self._export_lock = threading.Lock()
        self._batch_size = 512
        self._shipper: _Shipper | None = None
        if self.recording and batch:
            self._shipper = _Shipper(self, interval)
            self._shipper.start()

    @property
    def resource(self) -> Resource:
        """The OpenTelemetry resource of these spans (made on first use: it loads the SDK)."""
        if self._resource is None:
            from opentelemetry.sdk.resources import Resource

            self._resource = Resource.create({"service.name": self.service})
        return self._resource

    def sample_new(self) -> bool:
        """The sampling decision for a trace that starts here."""
        ratio = self.sample_ratio
        if not (ratio >= 1.0 or (ratio > 0.0 and random.random() < ratio)):
            return False
        limit = self.max_per_second
        if limit <= 0.0:
            return True
        now = self._clock()
        self._tokens = min(limit, self._tokens + (now - self._refilled) * limit)
        self._refilled = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def start(
        self,
        name: str,
        kind: SpanKind,
        parent: tuple[int, int, bool] | None,
        attributes: dict[str, Any],
    ) -> Span | None:
        """Start a span as a child of ``parent`` (a new root when None); None if unsampled."""
        if not self.recording:
            return None
        if parent is None:
            return Span(name, kind, new_trace_id(), None, attributes)
        trace_id, parent_id, sampled = parent
        return Span(name, kind, trace_id, parent_id, attributes) if sampled else None

    def end(self, span: Span, code: str) -> None:
        span.end_ns = _time_ns()
        span.code = code
        queue = self._queue
        queue.append(span)
        shipper = self._shipper
        if shipper is None:
            self.flush()
        elif len(queue) >= self._batch_size:
            shipper.wake.set()

    def flush(self) -> None:
        """Export every finished span now."""
        with self._export_lock:
            while self._queue:
                batch: list[Span] = []
                while self._queue and len(batch) < self._batch_size:
                    batch.append(self._queue.popleft())
                self._export(batch)

    def _export(self, batch: list[Span]) -> None:
        otel: list[ReadableSpan] | None = None
        for exporter in self.exporters:
            try:
                export_lite = getattr(exporter, "export_lite", None)
                if export_lite is not None:
                    export_lite(batch, self.service)
                    continue
                if otel is None:
                    otel = [span.to_otel(self.resource) for span in batch]
                exporter.export(otel)
            except Exception:  # an exporter must never take the service down
                log.exception("exporting %d spans with %s failed", len(batch), exporter)

    def shutdown(self) -> None:
        """Export what is left and stop the exporters."""
        if self._shipper is not None:
            self._shipper.stopping = True
            self._shipper.wake.set()
            self._shipper.join(timeout=10)
            self._shipper = None
        self.flush()
        for exporter in self.exporters:
            try:
                exporter.shutdown()
            except Exception:
                log.exception("stopping %s failed", exporter)
        self.exporters = []
        self.recording = False


def setup_tracing(
    *,
    service: str,
    store: Path | None,
    sample_ratio: float = 1.0,
    max_per_second: float = 0.0,
    otlp_endpoint: str | None = None,
    batch: bool = True,
    set_global: bool = False,
    exporters: list[Exporter] | None = None,
) -> Tracing:
    """A :class:`Tracing` recording spans to ``store`` (SQLite) and to OTLP when an endpoint is
    given (default: ``OTEL_EXPORTER_OTLP_ENDPOINT``). ``set_global`` also installs an
    OpenTelemetry tracer provider exporting the same way, for spans user code makes."""
    chosen: list[Exporter] = list(exporters or [])
    if store is not None:
        from lumi.runtime_services.observability.spanstore import SqliteSpanExporter

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
    tracing = Tracing(
        chosen, sample_ratio, max_per_second=max_per_second, service=service, batch=batch
    )
    if set_global and chosen:
        trace.set_tracer_provider(_GlobalProvider(tracing, chosen))
    return tracing


class _GlobalProvider(trace.TracerProvider):
    """The global tracer provider for spans user code makes: the SDK's, exporting where Lumi
    does, built on the first :meth:`get_tracer` (a replica whose code makes no spans of its own
    never loads the SDK nor starts its export thread)."""

    def __init__(self, tracing: Tracing, exporters: list[Exporter]) -> None:
        self._tracing = tracing
        self._exporters = exporters
        self._sdk: trace.TracerProvider | None = None
        self._lock = threading.Lock()

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        tracer: trace.Tracer = self.sdk.get_tracer(*args, **kwargs)
        return tracer

    @property
    def sdk(self) -> Any:
        """The SDK's ``TracerProvider`` behind this one (built on first use)."""
        with self._lock:
            if self._sdk is None:
                self._sdk = _sdk_provider(self._tracing.resource, self._exporters)
            return self._sdk

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True if self._sdk is None else bool(self.sdk.force_flush(timeout_millis))

    def shutdown(self) -> None:
        if self._sdk is not None:
            self.sdk.shutdown()

    def __getattr__(self, name: str) -> Any:  # the rest of the SDK provider's methods
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.sdk, name)


def _sdk_provider(resource: Resource, exporters: list[Exporter]) -> trace.TracerProvider:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export import SpanExporter as SdkExporter

    class Shared(SdkExporter):
        """An exporter used by both Lumi and this provider; only Lumi shuts it down."""

        def __init__(self, exporter: Exporter) -> None:
            self.exporter = exporter

        def export(self, spans: Any) -> Any:
            return self.exporter.export(spans)

        def shutdown(self) -> None:
            pass

    provider = TracerProvider(resource=resource)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(Shared(exporter)))
    return provider
