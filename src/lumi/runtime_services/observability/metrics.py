"""Metrics, in Prometheus form: what every service exposes at ``GET /metrics``.

=========================================  ==============================================
``lumi_requests_total``                    handled calls, by service, method and code
``lumi_request_duration_seconds``          handled-call latency histogram, same labels
``lumi_client_requests_total``             outbound calls, by caller, service, method, code
``lumi_client_request_duration_seconds``   outbound-call latency histogram (retries included)
``lumi_client_retries_total``              retry attempts, by caller, service, method, code
``lumi_client_rejected_total``             calls refused locally (breaker open, budget spent)
``lumi_circuit_state``                     0 closed, 1 half-open, 2 open, by endpoint,
                                           service and method
``lumi_events_published_total``            events published, by topic
``lumi_events_delivered_total``            deliveries handled, by topic, group and outcome
``lumi_events_redelivered_total``          deliveries that were a retry (attempt > 1)
``lumi_events_dead_lettered_total``        events given up on (moved to the dead-letter topic)
=========================================  ==============================================

Label values never come from unchecked input: a call to a service or method that does not exist
is counted under ``(unknown)`` (the observers see to that), and as a last guard each metric
keeps at most :data:`MAX_SERIES` label sets — any more are counted together under ``(other)``
— so nothing a caller sends can make ``/metrics`` grow without bound.

Recording happens on every call, so it is plain arithmetic on per-label-set slots held in
dicts (the middleware runs on the event loop, so no lock is needed); prometheus-client only
builds the families when ``/metrics`` is scraped, through a custom collector, and is imported
only then (an idle replica does not carry its ~2 MiB). Each app or
process has its own registry, so two apps in one test process never mix counts.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported on the first scrape: an idle replica never loads it (~2 MiB)
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Series:
    """One label set of a histogram: count, sum and per-bucket (non-cumulative) counts."""

    __slots__ = ("buckets", "count", "sum")

    def __init__(self) -> None:
        self.count = 0
        self.sum = 0.0
        self.buckets = [0] * (len(BUCKETS) + 1)

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.sum += seconds
        self.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1


Labels = tuple[str, ...]

MAX_SERIES = 2000  # label sets per metric
UNKNOWN = "(unknown)"  # the service/method label of calls to names that do not exist
OTHER = "(other)"  # every label of the label sets past MAX_SERIES

_COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "lumi_client_retries": (
        "Retry attempts of outbound calls",
        ("caller", "service", "method", "code"),
    ),
    "lumi_client_rejected": ("Outbound calls refused locally", ("caller", "service", "reason")),
    "lumi_events_published": ("Events published", ("topic",)),
    "lumi_events_delivered": ("Event deliveries handled", ("topic", "group", "outcome")),
    "lumi_events_redelivered": ("Redeliveries (attempt > 1)", ("topic", "group")),
    "lumi_events_dead_lettered": ("Events moved to the dead-letter topic", ("topic", "group")),
}


class Metrics:
    """The metrics of one process (or one in-process app)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._registry = registry
        if registry is not None:
            registry.register(_Collector(self))
        self.requests: dict[Labels, _Series] = {}
        self.client_requests: dict[Labels, _Series] = {}
        self.counters: dict[str, dict[Labels, float]] = {name: {} for name in _COUNTERS}
        self.circuits: dict[Labels, int] = {}

    @property
    def registry(self) -> CollectorRegistry:
        """The prometheus-client registry these metrics are collected into (made on first
        use)."""
        if self._registry is None:
            from prometheus_client import CollectorRegistry

            self._registry = CollectorRegistry()
            self._registry.register(_Collector(self))
        return self._registry

    def request(self, service: str, method: str, code: str, seconds: float) -> None:
        key = (service, method, code)
        series = self.requests.get(key)
        if series is None:
            series = _new_series(self.requests, key)
        series.observe(seconds)

    def client_request(
        self, caller: str, service: str, method: str, code: str, seconds: float
    ) -> None:
        key = (caller, service, method, code)
        series = self.client_requests.get(key)
        if series is None:
            series = _new_series(self.client_requests, key)
        series.observe(seconds)

    def _add(self, name: str, labels: Labels, amount: float = 1.0) -> None:
        counter = self.counters[name]
        if labels not in counter and len(counter) >= MAX_SERIES:
            labels = (OTHER,) * len(labels)
        counter[labels] = counter.get(labels, 0.0) + amount

    def retry(self, caller: str, service: str, method: str, code: str) -> None:
        self._add("lumi_client_retries", (caller, service, method, code))

    def reject(self, caller: str, service: str, reason: str) -> None:
        self._add("lumi_client_rejected", (caller, service, reason))

    def circuit_state(self, endpoint: str, service: str, method: str, state: int) -> None:
        key = (endpoint, service, method)
        if key not in self.circuits and len(self.circuits) >= MAX_SERIES:
            key = (OTHER, OTHER, OTHER)
        self.circuits[key] = state

    def publish(self, topic: str, count: int) -> None:
        self._add("lumi_events_published", (topic,), count)

    def delivery(self, topic: str, group: str, ok: bool, attempt: int, dead: bool) -> None:
        self._add("lumi_events_delivered", (topic, group, "ok" if ok else "error"))
        if attempt > 1:
            self._add("lumi_events_redelivered", (topic, group))
        if dead:
            self._add("lumi_events_dead_lettered", (topic, group))

    def value(self, name: str, **labels: str) -> float:
        """One sample's current value (0.0 when absent) — for tests and tools."""
        found = self.registry.get_sample_value(name, labels)
        return 0.0 if found is None else float(found)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        from prometheus_client.exposition import generate_latest

        return generate_latest(self.registry)

    async def route(self) -> tuple[int, str, bytes]:
        """A ``GET /metrics`` handler for the HTTP server: ``(status, content type, body)``."""
        from prometheus_client.exposition import CONTENT_TYPE_LATEST

        return 200, CONTENT_TYPE_LATEST, self.render()


class _Collector:
    """Builds the metric families from a :class:`Metrics` when scraped (a prometheus-client
    collector: ``collect`` is all a registry asks of one)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        m = self.metrics
        yield from _histogram(
            "lumi_requests",
            "lumi_request_duration_seconds",
            "Calls handled",
            ["service", "method", "code"],
            m.requests,
        )
        yield from _histogram(
            "lumi_client_requests",
            "lumi_client_request_duration_seconds",
            "Outbound calls (retries included in the latency)",
            ["caller", "service", "method", "code"],
            m.client_requests,
        )
        for name, (doc, label_names) in _COUNTERS.items():
            family = CounterMetricFamily(name, doc, labels=list(label_names))
            for labels, value in list(m.counters[name].items()):
                family.add_metric(list(labels), value)
            yield family
        gauge = GaugeMetricFamily(
            "lumi_circuit_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open",
            labels=["endpoint", "service", "method"],
        )
        for labels, state in list(m.circuits.items()):
            gauge.add_metric(list(labels), state)
        yield gauge


def _new_series(data: dict[Labels, _Series], key: Labels) -> _Series:
    if len(data) >= MAX_SERIES:
        key = (OTHER,) * len(key)
        found = data.get(key)
        if found is not None:
            return found
    series = data[key] = _Series()
    return series


def _histogram(
    counter_name: str,
    histogram_name: str,
    doc: str,
    label_names: list[str],
    data: dict[Labels, _Series],
) -> Iterator[Metric]:
    from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

    counter = CounterMetricFamily(counter_name, doc, labels=label_names)
    histogram = HistogramMetricFamily(histogram_name, f"Latency: {doc}", labels=label_names)
    for labels, series in list(data.items()):
        counter.add_metric(list(labels), series.count)
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        for bound, count in zip((*BUCKETS, float("inf")), series.buckets, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        histogram.add_metric(list(labels), buckets, series.sum)
    yield counter
    yield histogram
