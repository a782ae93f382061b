"""The observation middlewares: correlation, tracing, metrics and access logs in one layer each
for handled calls, outbound calls and publishes (one layer rather than three keeps the per-call
cost down).

* :class:`ServerObserver` — around every handled call and event delivery: adopts the inbound
  correlation id and traceparent or makes new ones, opens a SERVER/CONSUMER span (when sampled),
  hands the handler metadata whose traceparent names that span (so its outbound calls and
  publishes are its children), records metrics and logs the outcome.
* :class:`ClientObserver` — around every outbound call: a CLIENT span, client metrics.
* :class:`PublishObserver` — around every publish: a PRODUCER span whose traceparent goes into
  each CloudEvents envelope, and the publish counter.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.trace import SpanKind

from lumi.model.context import new_id
from lumi.model.errors import LumiError
from lumi.pipeline import Call, Handler
from lumi.pipeline.dispatch import UnknownTarget
from lumi.pipeline.edge import excerpt
from lumi.runtime_services.observability.log_budget import LogBudget
from lumi.runtime_services.observability.metrics import UNKNOWN, Metrics
from lumi.runtime_services.observability.tracing import (
    Tracing,
    format_traceparent,
    new_span_id,
    new_trace_id,
    parse_traceparent,
    traceparent_sampled,
)

access = logging.getLogger("lumi.access")

_UNSAMPLED = frozenset("02468ace")  # the last hex digit of an unsampled traceparent's flags

# Outcomes that are the server's fault are worth a warning; the rest is the caller's business.
_SERVER_FAULTS = frozenset({"INTERNAL", "UNKNOWN", "DATA_LOSS", "UNAVAILABLE", "DEADLINE_EXCEEDED"})


def _code_of(exc: BaseException) -> str:
    if isinstance(exc, LumiError):
        return exc.code.value
    if isinstance(exc, asyncio.CancelledError):
        return "CANCELLED"
    return "INTERNAL"


class ServerObserver:
    """Server middleware: correlation, SERVER/CONSUMER span, metrics, access log.

    Lines for failed calls are kept to a :class:`LogBudget` (a burst of 100, then 20 a
    second), so a flood of bad requests cannot flood the log; the next line written says how
    many were left out.
    """

    def __init__(
        self, tracing: Tracing, metrics: Metrics | None = None, budget: LogBudget | None = None
    ) -> None:
        self.tracing = tracing
        self.metrics = metrics
        self.budget = budget or LogBudget()

    async def __call__(self, call: Call, next_handler: Handler) -> bytes:
        meta = call.metadata
        tracing = self.tracing
        inbound = meta.traceparent
        flag = traceparent_sampled(inbound)
        sampled = tracing.sample_new() if flag is None else flag
        correlation = meta.correlation_id or new_id()
        span = None
        if sampled and tracing.recording:
            span = tracing.start(
                self._span_name(call),
                SpanKind.CONSUMER if call.kind == "event" else SpanKind.SERVER,
                parse_traceparent(inbound),
                self._attributes(call, correlation),
            )
        if span is not None:
            traceparent = span.traceparent
        elif flag is not None and inbound is not None:
            # It is well formed, so its first 36 characters are a valid version and trace id.
            flags = "-01" if sampled else "-00"
            traceparent = f"{inbound[:36]}{new_span_id():016x}{flags}"
        else:
            traceparent = format_traceparent(new_trace_id(), new_span_id(), sampled)
        # The call is the server's own (every transport builds it, the local channel copies
        # its caller's): set the correlation and traceparent the handler sees on it in place.
        meta.correlation_id = correlation
        meta.traceparent = traceparent
        token = None if span is None else otel_context.attach(span.otel_context())
        started = time.perf_counter()
        code = "OK"
        known = True
        try:
            return await next_handler(call)
        except BaseException as exc:
            code = _code_of(exc)
            known = not isinstance(exc, UnknownTarget)
            raise
        finally:
            elapsed = time.perf_counter() - started
            if token is not None:
                otel_context.detach(token)
            if span is not None:
                tracing.end(span, code)
            self._record(call, code, elapsed, known)

    @staticmethod
    def _span_name(call: Call) -> str:
        if call.kind == "event":
            return f"{call.service}.{call.method} ← {call.topic}"
        return f"{excerpt(call.service, 64)}/{excerpt(call.method, 64)}"

    @staticmethod
    def _attributes(call: Call, correlation: str) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "lumi.service": excerpt(call.service, 64),
            "lumi.correlation_id": correlation,
        }
        if call.kind == "event":
            attributes["messaging.destination.name"] = call.topic or ""
            attributes["messaging.message.id"] = call.event_id or ""
            attributes["lumi.attempt"] = call.attempt
        else:
            attributes["rpc.method"] = excerpt(call.method, 64)
            if call.metadata.caller:
                attributes["lumi.caller"] = call.metadata.caller
        return attributes

    def _record(self, call: Call, code: str, elapsed: float, known: bool = True) -> None:
        metrics = self.metrics
        is_event = call.kind == "event"
        dead = False
        if is_event:
            dead = code != "OK" and (
                code == "INVALID_ARGUMENT" or 0 < call.max_attempts <= call.attempt
            )
            if metrics is not None:
                metrics.delivery(call.topic or "", call.service, code == "OK", call.attempt, dead)
        elif metrics is not None:
            if known:
                metrics.request(call.service, call.method, code, elapsed)
            else:  # names from the caller: never a label
                metrics.request(UNKNOWN, UNKNOWN, code, elapsed)
        if code == "OK" or code == "CANCELLED":  # cancelled: the caller went away
            if not access.isEnabledFor(logging.DEBUG):
                return
            level = logging.DEBUG
        else:
            level = logging.WARNING if code in _SERVER_FAULTS or dead else logging.INFO
            if not self.budget.allow():
                return
        meta = call.metadata
        tp = meta.traceparent or ""
        service = call.service if known else excerpt(call.service, 64)
        fields: dict[str, Any] = {
            "service": service,
            "code": code,
            "duration_ms": round(elapsed * 1000, 3),
            "correlation_id": meta.correlation_id,
            "trace_id": tp[3:35],
            "span_id": tp[36:52],
        }
        if is_event:
            fields.update(event=call.topic, handler=call.method, attempt=call.attempt)
            what = f"event {call.topic} → {call.service}.{call.method}"
            if dead:
                what += " (dead-lettered)"
        else:
            fields["method"] = call.method if known else excerpt(call.method, 64)
            if meta.caller:
                fields["caller"] = meta.caller
            what = f"{service}.{fields['method']}"
        dropped = self.budget.take_dropped() if level > logging.DEBUG else 0
        if dropped:
            fields["dropped"] = dropped
        suffix = f" ({dropped} failed calls before it not logged)" if dropped else ""
        access.log(level, "%s %s in %.1f ms%s", what, code, elapsed * 1000, suffix, extra=fields)


class ClientObserver:
    """Client middleware: CLIENT span (child of the current call's span), client metrics."""

    def __init__(self, caller: str | None, tracing: Tracing, metrics: Metrics | None = None):
        self.caller = caller or "-"
        self.tracing = tracing
        self.metrics = metrics

    async def __call__(self, call: Call, next_handler: Handler) -> bytes:
        meta = call.metadata
        tracing = self.tracing
        tp = meta.traceparent
        # Fast path: the served call's own traceparent (well formed), not sampled.
        if (tp is not None and len(tp) == 55 and tp[54] in _UNSAMPLED) or not tracing.recording:
            parent = None if tp is None else (0, 0, False)
        else:
            parent = parse_traceparent(tp)
        sampled = tracing.sample_new() if parent is None else parent[2]
        span = None
        if sampled and tracing.recording:
            parent = parse_traceparent(tp)
            attributes: dict[str, Any] = {"lumi.service": self.caller}
            if meta.correlation_id:
                attributes["lumi.correlation_id"] = meta.correlation_id
            span = tracing.start(
                f"{call.service}/{call.method}", SpanKind.CLIENT, parent, attributes
            )
        if span is not None:
            meta.traceparent = span.traceparent
        elif parent is None:
            meta.traceparent = format_traceparent(new_trace_id(), new_span_id(), sampled)
        started = time.perf_counter()
        code = "OK"
        try:
            return await next_handler(call)
        except BaseException as exc:
            code = _code_of(exc)
            raise
        finally:
            if span is not None:
                tracing.end(span, code)
            if self.metrics is not None:
                # A method the client does not know (no info) may be any name: not a label.
                method = call.method if call.info is not None else UNKNOWN
                self.metrics.client_request(
                    self.caller, call.service, method, code, time.perf_counter() - started
                )


class PublishObserver:
    """Publish middleware: PRODUCER span, traceparent into each envelope, publish counter."""

    def __init__(self, service: str, tracing: Tracing, metrics: Metrics | None = None) -> None:
        self.service = service
        self.tracing = tracing
        self.metrics = metrics

    async def __call__(self, call: Call, next_handler: Handler) -> bytes:
        tracing = self.tracing
        topic = call.topic or ""
        envelopes = call.envelopes
        first = envelopes[0] if envelopes else None
        parent = parse_traceparent(first.traceparent if first is not None else None)
        sampled = tracing.sample_new() if parent is None else parent[2]
        span = None
        if sampled and tracing.recording:
            attributes: dict[str, Any] = {
                "lumi.service": self.service,
                "messaging.destination.name": topic,
                "messaging.batch.message_count": len(envelopes),
            }
            if first is not None and first.correlationid:
                attributes["lumi.correlation_id"] = first.correlationid
            span = tracing.start(f"publish {topic}", SpanKind.PRODUCER, parent, attributes)
        traceparent = None
        if span is not None:
            traceparent = span.traceparent
        elif parent is None:
            traceparent = format_traceparent(new_trace_id(), new_span_id(), sampled)
        if traceparent is not None:
            for envelope in envelopes:
                envelope.traceparent = traceparent
        code = "OK"
        try:
            result = await next_handler(call)
        except BaseException as exc:
            code = _code_of(exc)
            raise
        finally:
            if span is not None:
                tracing.end(span, code)
        if self.metrics is not None:
            self.metrics.publish(topic, len(envelopes))
        return result
