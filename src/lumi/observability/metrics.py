"""Metrics, in Prometheus form: what every service exposes at ``GET /metrics``.

=========================================  ==============================================
``lumi_requests_total``                    handled calls, by service, method and code
``lumi_request_duration_seconds``          handled-call latency histogram, same labels
``lumi_client_requests_total``             outbound calls, by caller, service, method, code
``lumi_client_request_duration_seconds``   outbound-call latency histogram (retries included)
``lumi_client_retries_total``              retry attempts, by caller, service, method, code
``lumi_client_rejected_total``             calls refused locally (breaker open, budget spent)
``lumi_circuit_state``                     0 closed, 1 half-open, 2 open, by endpoint
``lumi_events_published_total``            events published, by topic
``lumi_events_delivered_total``            deliveries handled, by topic, group and outcome
``lumi_events_redelivered_total``          deliveries that were a retry (attempt > 1)
``lumi_events_dead_lettered_total``        events given up on (moved to the dead-letter topic)
=========================================  ==============================================

Each app or process gets its own registry, so two apps in one test process never mix counts.
Label children are cached: recording is a dict lookup plus prometheus-client's locked add.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The metric families of one registry, with cached label children."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "lumi_requests", "Calls handled", ["service", "method", "code"], registry=r
        )
        self.latency = Histogram(
            "lumi_request_duration_seconds",
            "Latency of handled calls",
            ["service", "method", "code"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.client_requests = Counter(
            "lumi_client_requests",
            "Outbound calls",
            ["caller", "service", "method", "code"],
            registry=r,
        )
        self.client_latency = Histogram(
            "lumi_client_request_duration_seconds",
            "Latency of outbound calls, retries included",
            ["caller", "service", "method", "code"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            "lumi_client_retries",
            "Retry attempts of outbound calls",
            ["caller", "service", "method", "code"],
            registry=r,
        )
        self.rejected = Counter(
            "lumi_client_rejected",
            "Outbound calls refused locally",
            ["caller", "service", "reason"],
            registry=r,
        )
        self.circuit = Gauge(
            "lumi_circuit_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open",
            ["endpoint"],
            registry=r,
        )
        self.published = Counter("lumi_events_published", "Events published", ["topic"], registry=r)
        self.delivered = Counter(
            "lumi_events_delivered",
            "Event deliveries handled",
            ["topic", "group", "outcome"],
            registry=r,
        )
        self.redelivered = Counter(
            "lumi_events_redelivered", "Redeliveries (attempt > 1)", ["topic", "group"], registry=r
        )
        self.dead_lettered = Counter(
            "lumi_events_dead_lettered",
            "Events moved to the dead-letter topic",
            ["topic", "group"],
            registry=r,
        )
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, family: Any, labels: tuple[str, ...]) -> Any:
        key = (id(family), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = family.labels(*labels)
        return child

    def request(self, service: str, method: str, code: str, seconds: float) -> None:
        labels = (service, method, code)
        self._child(self.requests, labels).inc()
        self._child(self.latency, labels).observe(seconds)

    def client_request(
        self, caller: str, service: str, method: str, code: str, seconds: float
    ) -> None:
        labels = (caller, service, method, code)
        self._child(self.client_requests, labels).inc()
        self._child(self.client_latency, labels).observe(seconds)

    def retry(self, caller: str, service: str, method: str, code: str) -> None:
        self._child(self.retries, (caller, service, method, code)).inc()

    def reject(self, caller: str, service: str, reason: str) -> None:
        self._child(self.rejected, (caller, service, reason)).inc()

    def circuit_state(self, endpoint: str, state: int) -> None:
        self._child(self.circuit, (endpoint,)).set(state)

    def publish(self, topic: str, count: int) -> None:
        self._child(self.published, (topic,)).inc(count)

    def delivery(self, topic: str, group: str, ok: bool, attempt: int, dead: bool) -> None:
        self._child(self.delivered, (topic, group, "ok" if ok else "error")).inc()
        if attempt > 1:
            self._child(self.redelivered, (topic, group)).inc()
        if dead:
            self._child(self.dead_lettered, (topic, group)).inc()

    def value(self, name: str, **labels: str) -> float:
        """One sample's current value (0.0 when absent) — for tests and tools."""
        found = self.registry.get_sample_value(name, labels)
        return 0.0 if found is None else float(found)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)

    async def route(self) -> tuple[int, str, bytes]:
        """A ``GET /metrics`` handler for the HTTP server: ``(status, content type, body)``."""
        return 200, CONTENT_TYPE_LATEST, self.render()
