"""Tracing: W3C trace context, linked spans across calls and events, sampling, the span store."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from rich.console import Console

import lumi
from lumi.runtime_services.observability.spanstore import read_trace, recent_traces
from lumi.runtime_services.observability.tracing import (
    Tracing,
    format_traceparent,
    parse_traceparent,
    setup_tracing,
    traceparent_sampled,
)
from lumi.runtime_services.observability.waterfall import waterfall
from lumi.runtimes.stack import RuntimeServices
from lumi.testing import wait_until
from tests.observekit import CHAIN, Gateway, Inventory, Mailer


def recording(sample_ratio: float = 1.0) -> tuple[RuntimeServices, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing = Tracing([exporter], sample_ratio, batch=False)
    return RuntimeServices(tracing=tracing), exporter


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {span.name: span for span in spans}


def test_traceparent_round_trips_and_rejects_garbage() -> None:
    """A traceparent parses to (trace, span, sampled) and back; malformed ones are None."""
    text = format_traceparent(0xABC, 0x12, True)
    assert text == f"00-{0xABC:032x}-{0x12:016x}-01"
    assert parse_traceparent(text) == (0xABC, 0x12, True)
    assert parse_traceparent(format_traceparent(1, 2, False)) == (1, 2, False)
    ids = "-" + "a" * 32 + "-" + "b" * 16 + "-"
    for bad in (
        None, "", "00-xyz", "00-" + "0" * 32 + "-" + "1" * 16 + "-01", "x" * 55,
        "00" + ids.upper() + "01", "ff" + ids + "01", "00-" + "a" * 32 + "-" + "0" * 16 + "-01",
        "00" + ids + "01x", "00" + ids + "1",
    ):  # fmt: skip
        assert parse_traceparent(bad) is None and traceparent_sampled(bad) is None, bad
    assert traceparent_sampled("00" + ids + "03") is True  # another flag set as well
    assert traceparent_sampled("00" + ids + "02") is False
    assert parse_traceparent("01" + ids + "01-future") == (
        int("a" * 32, 16),
        int("b" * 16, 16),
        True,
    )


async def test_spans_link_calls_publish_and_delivery_into_one_tree() -> None:
    """client → server → client → server, publish and the subscriber's span form one trace."""
    runtime, exporter = recording()
    async with lumi.App(CHAIN, runtime=runtime) as app:
        await app.client(Gateway).buy(sku="apple", password="x")
        await wait_until(lambda: bool(app.service(Mailer).sent), message="mail sent")
        await wait_until(lambda: len(exporter.get_finished_spans()) >= 8, message="8 spans")
    finished = exporter.get_finished_spans()
    assert len(finished) == 8  # 3 calls x (client + server), 1 publish, 1 delivery
    spans = by_name(finished)
    assert {s.context.trace_id for s in spans.values()} == {spans["Gateway/buy"].context.trace_id}

    def parent(name: str) -> str:
        span_parent = spans[name].parent
        assert span_parent is not None, name
        return next(s.name for s in finished if s.context.span_id == span_parent.span_id)

    assert spans["Mailer.on_placed ← Orders.placed"].kind.name == "CONSUMER"
    assert parent("Mailer.on_placed ← Orders.placed") == "publish Orders.placed"
    assert spans["publish Orders.placed"].kind.name == "PRODUCER"
    correlation = spans["Gateway/buy"].attributes["lumi.correlation_id"]  # type: ignore[index]
    assert spans["Inventory/reserve"].attributes["lumi.correlation_id"] == correlation  # type: ignore[index]


async def test_client_and_server_spans_nest_across_hops() -> None:
    """Each server span's parent is the caller's client span, whose parent is its server span."""
    runtime, exporter = recording()
    async with lumi.App(CHAIN, runtime=runtime) as app:
        await app.client(Gateway).buy(sku="apple", password="x")
    spans = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}
    server = next(s for s in spans if s.name == "Inventory/reserve" and s.kind.name == "SERVER")
    chain = [server]
    while chain[-1].parent is not None:
        chain.append(by_id[chain[-1].parent.span_id])
    assert [(s.name, s.kind.name) for s in chain] == [
        ("Inventory/reserve", "SERVER"),
        ("Inventory/reserve", "CLIENT"),
        ("Orders/place", "SERVER"),
        ("Orders/place", "CLIENT"),
        ("Gateway/buy", "SERVER"),
        ("Gateway/buy", "CLIENT"),
    ]


async def test_an_inbound_traceparent_is_continued_and_its_decision_kept() -> None:
    """A caller's trace id is kept; an unsampled caller's decision means no spans at all."""
    runtime, exporter = recording()
    async with lumi.App([Inventory], runtime=runtime) as app:
        handle = app.host.dispatcher.handle
        sampled = format_traceparent(0x1234, 0x99, True)
        unsampled = format_traceparent(0x5678, 0x98, False)
        for tp in (sampled, unsampled):
            meta = lumi.Metadata(correlation_id="c", traceparent=tp)
            await handle(lumi_call(meta))
    spans = exporter.get_finished_spans()
    assert [(s.context.trace_id, s.parent.span_id) for s in spans if s.parent] == [(0x1234, 0x99)]


def lumi_call(meta: lumi.Metadata) -> object:
    from lumi.pipeline import Call

    return Call("Inventory", "reserve", b'{"sku":"a"}', meta)


async def test_sampling_ratio_zero_records_nothing_but_still_propagates() -> None:
    """At ratio 0 no span is recorded, yet every hop still gets a traceparent (for log ids)."""
    runtime, exporter = recording(sample_ratio=0.0)
    seen: list[str | None] = []

    class Probe(lumi.Service):
        @lumi.api
        async def tp(self) -> str:
            ctx = lumi.context()
            assert ctx is not None
            seen.append(ctx.metadata.traceparent)
            return "ok"

    async with lumi.App([Probe], runtime=runtime) as app:
        await app.client(Probe).tp()
    assert exporter.get_finished_spans() == ()
    parsed = parse_traceparent(seen[0])
    assert parsed is not None and parsed[2] is False
    with pytest.raises(ValueError, match="between 0 and 1"):
        Tracing(None, 1.5)


async def test_span_store_keeps_a_trace_readable_by_trace_or_correlation_id(
    tmp_path: Path,
) -> None:
    """Spans land in SQLite; read_trace finds them by trace id or correlation id; waterfall."""
    store = tmp_path / ".lumi" / "traces.db"
    tracing = setup_tracing(service="app", store=store, batch=False)
    try:
        async with lumi.App(CHAIN, runtime=RuntimeServices(tracing=tracing)) as app:
            await app.client(Gateway).buy(sku="apple", password="x")
            await wait_until(lambda: bool(app.service(Mailer).sent), message="mail sent")
    finally:
        tracing.shutdown()
    roots = recent_traces(store)
    assert len(roots) == 1 and roots[0].name == "Gateway/buy"
    by_trace = read_trace(store, roots[0].trace_id)
    by_correlation = read_trace(store, roots[0].correlation_id or "")
    assert len(by_trace) == len(by_correlation) >= 8
    assert {s.service for s in by_trace} >= {"Gateway", "Orders", "Inventory", "Mailer"}
    console = Console(width=160, record=True)
    console.print(waterfall(by_trace))
    text = console.export_text()
    assert "Gateway/buy" in text and "└─" in text and "publish Orders.placed" in text
    assert read_trace(store, "nope") == []


async def test_the_opentelemetry_context_names_the_call_span_in_a_sampled_handler() -> None:
    """Inside a sampled handler, OpenTelemetry's current span is the call's server span."""
    from opentelemetry import trace

    runtime, exporter = recording()
    seen: list[tuple[int, int]] = []

    class Probe(lumi.Service):
        @lumi.api
        async def here(self) -> None:
            ctx = trace.get_current_span().get_span_context()
            seen.append((ctx.trace_id, ctx.span_id))

    async with lumi.App([Probe], runtime=runtime) as app:
        await app.client(Probe).here()
    server = next(s for s in exporter.get_finished_spans() if s.kind.name == "SERVER")
    assert seen == [(server.context.trace_id, server.context.span_id)]
    assert trace.get_current_span().get_span_context().is_valid is False


def test_new_traces_are_capped_per_second() -> None:
    """max_per_second bounds how many new traces are sampled, then refills over time."""
    from lumi.runtime_services.observability.tracing import Tracing

    now = [100.0]
    tracing = Tracing(sample_ratio=1.0, max_per_second=5, clock=lambda: now[0])
    decisions = [tracing.sample_new() for _ in range(50)]
    assert decisions.count(True) == 5 and decisions[:5] == [True] * 5
    now[0] += 0.2  # a fifth of a second: one more token
    assert [tracing.sample_new() for _ in range(3)] == [True, False, False]
    now[0] += 10.0  # the bucket holds at most a second's worth
    assert [tracing.sample_new() for _ in range(6)].count(True) == 5
    assert Tracing(sample_ratio=1.0).sample_new() is True  # no limit by default


_USER_SPAN = """
import sys
from pathlib import Path
from opentelemetry import context, trace
from lumi.runtime_services.observability.spanstore import read_trace
from lumi.runtime_services.observability.tracing import setup_tracing

store = Path(sys.argv[1])
tracing = setup_tracing(service="Probe", store=store, batch=False, set_global=True)
print("sdk before", any(m.startswith("opentelemetry.sdk") for m in sys.modules))
call = tracing.start("Probe/here", trace.SpanKind.SERVER, None, {})
token = context.attach(call.otel_context())
with trace.get_tracer("user-code").start_as_current_span("user work"):
    pass
context.detach(token)
tracing.end(call, "OK")
trace.get_tracer_provider().force_flush()
spans = {s.name: s for s in read_trace(store, f"{call.trace_id:032x}")}
print("sdk after", any(m.startswith("opentelemetry.sdk") for m in sys.modules))
print("nested", spans["user work"].parent_id == spans["Probe/here"].span_id)
print("service", spans["user work"].service)
"""


def test_user_spans_nest_under_lumis_and_the_sdk_loads_only_for_them(tmp_path: Path) -> None:
    """The global provider Lumi installs exports the spans user code makes with the
    OpenTelemetry API to the same store, nested under the call's span; until user code asks it
    for a tracer, the process has not loaded the OpenTelemetry SDK (~1 MiB of every replica)."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", _USER_SPAN, str(tmp_path / "traces.db")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.splitlines() == [
        "sdk before False",
        "sdk after True",
        "nested True",
        "service Probe",
    ], result.stderr
