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
dicts (the middleware runs on the event loop, so no lock is needed). The text exposition is
written here rather than by prometheus-client: importing that costs every replica ~2 MiB of
RSS and ~40 modules (``bench/replica_bench.py``), for a format of a few lines;
``tests/unit/test_metrics.py`` checks that the bytes are prometheus-client's, and the
dashboard reads them with its parser. Each app or process has its own :class:`Metrics`, so
two apps in one test process never mix counts.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable

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

    def __init__(self) -> None:
        self.requests: dict[Labels, _Series] = {}
        self.client_requests: dict[Labels, _Series] = {}
        self.counters: dict[str, dict[Labels, float]] = {name: {} for name in _COUNTERS}
        self.circuits: dict[Labels, int] = {}

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
        wanted = dict(labels)
        for sample, sample_labels, found in self.samples():
            if sample == name and dict(sample_labels) == wanted:
                return found
        return 0.0

    def samples(self) -> Iterable[Sample]:
        """Every sample as ``(name, labels, value)``, in exposition order."""
        for family in self._families():
            yield from family[3]

    def render(self) -> bytes:
        """The Prometheus text exposition (format 0.0.4) of every metric."""
        out: list[str] = []
        for name, kind, doc, samples in self._families():
            out.append(f"# HELP {name} {_escape_help(doc)}\n# TYPE {name} {kind}\n")
            for sample, labels, value in samples:
                if labels:
                    text = ",".join(f'{k}="{_escape_label(v)}"' for k, v in sorted(labels))
                    out.append(f"{sample}{{{text}}} {_go_float(value)}\n")
                else:
                    out.append(f"{sample} {_go_float(value)}\n")
        return "".join(out).encode()

    async def route(self) -> tuple[int, str, bytes]:
        """A ``GET /metrics`` handler for the HTTP server: ``(status, content type, body)``."""
        return 200, CONTENT_TYPE, self.render()

    def _families(self) -> Iterable[_Family]:
        yield from _histogram(
            "lumi_requests",
            "lumi_request_duration_seconds",
            "Calls handled",
            ("service", "method", "code"),
            self.requests,
        )
        yield from _histogram(
            "lumi_client_requests",
            "lumi_client_request_duration_seconds",
            "Outbound calls (retries included in the latency)",
            ("caller", "service", "method", "code"),
            self.client_requests,
        )
        for name, (doc, label_names) in _COUNTERS.items():
            samples = [
                (f"{name}_total", tuple(zip(label_names, labels, strict=True)), value)
                for labels, value in list(self.counters[name].items())
            ]
            yield f"{name}_total", "counter", doc, samples
        circuit = ("endpoint", "service", "method")
        yield (
            "lumi_circuit_state",
            "gauge",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open",
            [
                ("lumi_circuit_state", tuple(zip(circuit, labels, strict=True)), float(state))
                for labels, state in list(self.circuits.items())
            ],
        )


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Sample = tuple[str, tuple[tuple[str, str], ...], float]
_Family = tuple[str, str, str, list[Sample]]  # exposed name, type, help, samples
_LE = (*(repr(bound) for bound in BUCKETS), "+Inf")


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
    label_names: tuple[str, ...],
    data: dict[Labels, _Series],
) -> Iterable[_Family]:
    """A counter of the calls and a histogram of their latency, from the same series."""
    counts: list[Sample] = []
    latency: list[Sample] = []
    for labels, series in list(data.items()):
        named = tuple(zip(label_names, labels, strict=True))
        counts.append((f"{counter_name}_total", named, float(series.count)))
        cumulative = 0
        for le, count in zip(_LE, series.buckets, strict=True):
            cumulative += count
            latency.append((f"{histogram_name}_bucket", (*named, ("le", le)), float(cumulative)))
        latency.append((f"{histogram_name}_count", named, float(cumulative)))
        latency.append((f"{histogram_name}_sum", named, series.sum))
    yield f"{counter_name}_total", "counter", doc, counts
    yield histogram_name, "histogram", f"Latency: {doc}", latency


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _go_float(value: float) -> str:
    """A sample value as Prometheus's Go code writes it (and prometheus-client copies)."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    text = repr(value)
    dot = text.find(".")
    if value > 0 and dot > 6:  # Go switches to an exponent sooner than Python does
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text
