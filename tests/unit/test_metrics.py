"""Metrics: request and client counters and histograms, event counters, the exposition."""

from __future__ import annotations

import pydantic
import pytest

import lumi
from lumi.runtime_services.observability.metrics import (
    _COUNTERS,
    BUCKETS,
    MAX_SERIES,
    OTHER,
    Metrics,
)
from lumi.testing import wait_until
from tests.observekit import CHAIN, Gateway, Inventory, Mailer


class Tick(pydantic.BaseModel):
    n: int


class Clock(lumi.Service):
    ticked = lumi.event(Tick)

    @lumi.api
    async def tick(self, n: int) -> None:
        await self.ticked.publish(Tick(n=n))


class Fussy(lumi.Service):
    async def startup(self) -> None:
        self.seen: list[int] = []

    @lumi.subscribe(Clock.ticked, max_attempts=2)
    async def on_tick(self, event: Tick) -> None:
        self.seen.append(event.n)
        if event.n < 0:
            raise RuntimeError("negative ticks are not allowed")


async def test_requests_are_counted_per_method_and_code() -> None:
    """Handled and outbound calls are counted and timed per method and status code."""
    async with lumi.App(CHAIN) as app:
        metrics = app.runtime.metrics
        await app.client(Gateway).buy(sku="apple", password="x")
        with pytest.raises(lumi.InvalidArgument):
            await app.client(Inventory).reserve(sku=3)  # type: ignore[arg-type]
        await wait_until(lambda: bool(app.service(Mailer).sent), message="mail sent")
    value = metrics.value
    assert value("lumi_requests_total", service="Inventory", method="reserve", code="OK") == 1
    assert (
        value("lumi_requests_total", service="Inventory", method="reserve", code="INVALID_ARGUMENT")
        == 1
    )
    assert (
        value("lumi_request_duration_seconds_count", service="Gateway", method="buy", code="OK")
        == 1
    )
    assert (
        value(
            "lumi_client_requests_total",
            caller="-",
            service="Orders",
            method="place",
            code="OK",
        )
        == 1
    )
    assert value("lumi_events_published_total", topic="Orders.placed") == 1
    assert (
        value("lumi_events_delivered_total", topic="Orders.placed", group="Mailer", outcome="ok")
        == 1
    )
    text = metrics.render().decode()
    assert 'lumi_requests_total{code="OK",method="buy",service="Gateway"} 1.0' in text
    status, content_type, body = await metrics.route()
    assert status == 200 and content_type.startswith("text/plain") and b"lumi_" in body


async def test_redeliveries_and_dead_letters_are_counted() -> None:
    """A failing handler's retry and its final dead-lettering are counted."""
    async with lumi.App([Clock, Fussy]) as app:
        await app.client(Clock).tick(n=-1)
        await wait_until(lambda: len(app.service(Fussy).seen) == 2, timeout=10, message="2 tries")
        metrics = app.runtime.metrics
        labels = {"topic": "Clock.ticked", "group": "Fussy"}
        await wait_until(
            lambda: metrics.value("lumi_events_dead_lettered_total", **labels) == 1,
            message="dead-lettered",
        )
    assert metrics.value("lumi_events_redelivered_total", **labels) == 1
    assert metrics.value("lumi_events_delivered_total", outcome="error", **labels) == 2


async def test_two_apps_never_share_counts() -> None:
    """Each in-process app has its own registry."""
    async with lumi.App([Inventory]) as one, lumi.App([Inventory]) as two:
        await one.client(Inventory).reserve(sku="a")
        labels = {"service": "Inventory", "method": "reserve", "code": "OK"}
        assert one.runtime.metrics.value("lumi_requests_total", **labels) == 1
        assert two.runtime.metrics.value("lumi_requests_total", **labels) == 0


def _prometheus_client_text(metrics: Metrics) -> bytes:
    """The same data through prometheus-client's own families and writer: the reference."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )
    from prometheus_client.exposition import generate_latest

    def histogram(name: str, latency: str, doc: str, labels: list[str], data: dict) -> list:  # type: ignore[type-arg]
        counter = CounterMetricFamily(name, doc, labels=labels)
        hist = HistogramMetricFamily(latency, f"Latency: {doc}", labels=labels)
        for values, series in data.items():
            counter.add_metric(list(values), series.count)
            cumulative, buckets = 0, []
            for bound, count in zip((*BUCKETS, float("inf")), series.buckets, strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            hist.add_metric(list(values), buckets, series.sum)
        return [counter, hist]

    class Collector:
        def collect(self) -> list:  # type: ignore[type-arg]
            families = histogram(
                "lumi_requests",
                "lumi_request_duration_seconds",
                "Calls handled",
                ["service", "method", "code"],
                metrics.requests,
            )
            families += histogram(
                "lumi_client_requests",
                "lumi_client_request_duration_seconds",
                "Outbound calls (retries included in the latency)",
                ["caller", "service", "method", "code"],
                metrics.client_requests,
            )
            for name, (doc, names) in _COUNTERS.items():
                family = CounterMetricFamily(name, doc, labels=list(names))
                for values, value in metrics.counters[name].items():
                    family.add_metric(list(values), value)
                families.append(family)
            gauge = GaugeMetricFamily(
                "lumi_circuit_state",
                "Circuit breaker state: 0 closed, 1 half-open, 2 open",
                labels=["endpoint", "service", "method"],
            )
            for values, state in metrics.circuits.items():
                gauge.add_metric(list(values), state)
            families.append(gauge)
            return families

    registry = CollectorRegistry()
    registry.register(Collector())  # type: ignore[arg-type]
    return generate_latest(registry)


def test_the_exposition_is_byte_for_byte_prometheus_clients() -> None:
    """Lumi writes /metrics itself (prometheus-client would cost every replica ~2 MiB): the
    bytes equal prometheus-client's for the same data — escapes, big and tiny numbers and the
    overflow label set included — and its parser reads every sample back."""
    from prometheus_client.parser import text_string_to_metric_families

    metrics = Metrics()
    assert metrics.render() == _prometheus_client_text(metrics)  # nothing recorded yet
    for seconds in (0.0001, 0.003, 0.003, 0.7, 12.0, 3e-9):
        metrics.request("Orders", "place", "OK", seconds)
    metrics.request('we"ird\\name\nx', "ünïcode", "INTERNAL", 2.5)
    metrics.client_request("Front", "Orders", "place", "UNAVAILABLE", 1234567.0)
    metrics.retry("Front", "Orders", "place", "UNAVAILABLE")
    metrics.reject("Front", "Orders", "breaker")
    metrics.publish("Orders.placed", 123456789)
    metrics.delivery("Orders.placed", "Mailer", ok=False, attempt=3, dead=True)
    metrics.circuit_state("127.0.0.1:9", "Orders", "place", 2)
    for n in range(MAX_SERIES + 5):
        metrics.publish(f"topic{n}", 1)
    text = metrics.render()
    assert text == _prometheus_client_text(metrics)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }
    assert samples == {
        (name, tuple(sorted(labels))): value for name, labels, value in metrics.samples()
    }
    assert metrics.value("lumi_events_published_total", topic=OTHER) == 6  # Orders.placed took one
    assert metrics.value("lumi_client_request_duration_seconds_sum", caller="Front",
                         service="Orders", method="place", code="UNAVAILABLE") == 1234567.0  # fmt: skip
    assert metrics.value("lumi_requests_total", service="nobody", method="x", code="OK") == 0.0
