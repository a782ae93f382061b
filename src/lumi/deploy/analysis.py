"""Canary analysis from Lumi's own metrics: every replica serves Prometheus ``/metrics``.

For each side (the canary's replicas, the stable ones) the analysis scrapes
``lumi_requests_total`` and ``lumi_request_duration_seconds`` of the service, sums them over
the side's replicas (with ``lumi_events_delivered_total`` of its consumer groups: a
delivery is a call without a latency) and subtracts what they were when the canary started,
giving a
:class:`~lumi.deploy.state.Sample`: calls, errors — the codes that are the callee's fault, as
the circuit breakers count them (INTERNAL, UNAVAILABLE, DEADLINE_EXCEEDED, UNKNOWN,
DATA_LOSS), never the caller's mistakes — and the p99 estimated from the histogram the way
Prometheus' ``histogram_quantile`` does. :func:`judge` compares the canary with the stable
version; the first check that crosses a threshold fails the step (Argo Rollouts' analysis,
run in the control plane).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import ssl
from collections.abc import Iterable

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from lumi.config import DeployConfig
from lumi.deploy.state import Sample
from lumi.runtime_services.resilience.breaker import FAILURE_CODES

_ERROR_CODES = frozenset(code.value for code in FAILURE_CODES)
SCRAPE_TIMEOUT = 2.0


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """Counts of one service's handled calls: total, errors, and the latency histogram
    (cumulative counts per upper bound, ascending, ``inf`` last)."""

    requests: float = 0.0
    errors: float = 0.0
    buckets: tuple[tuple[float, float], ...] = ()

    def __add__(self, other: Snapshot) -> Snapshot:
        buckets = _combine(self.buckets, other.buckets, 1.0)
        return Snapshot(self.requests + other.requests, self.errors + other.errors, buckets)

    def __sub__(self, other: Snapshot) -> Snapshot:
        buckets = _combine(self.buckets, other.buckets, -1.0)
        return Snapshot(self.requests - other.requests, self.errors - other.errors, buckets)

    def sample(self) -> Sample:
        requests = max(0, round(self.requests))
        p99 = quantile(0.99, self.buckets) if requests else None
        return Sample(requests=requests, errors=max(0, round(self.errors)), p99=p99)


def _combine(
    a: tuple[tuple[float, float], ...], b: tuple[tuple[float, float], ...], sign: float
) -> tuple[tuple[float, float], ...]:
    counts = dict(a)
    for bound, count in b:
        counts[bound] = counts.get(bound, 0.0) + sign * count
    return tuple(sorted(counts.items()))


def parse(text: str, service: str) -> Snapshot:
    """The calls ``service`` handled, from a ``/metrics`` page."""
    requests = errors = 0.0
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            group = labels.get("group", "")  # deliveries: the consumer group is the service
            mine = group == service or group.startswith(f"{service}-")
            if labels.get("service") != service and not mine:
                continue
            if sample.name == "lumi_requests_total":
                requests += sample.value
                if labels.get("code") in _ERROR_CODES:
                    errors += sample.value
            elif sample.name == "lumi_events_delivered_total":
                requests += sample.value  # an event handled is a call too, without a latency
                if labels.get("outcome") == "error":
                    errors += sample.value
            elif sample.name == "lumi_request_duration_seconds_bucket":
                bound = float(labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return Snapshot(requests, errors, tuple(sorted(buckets.items())))


def quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """The ``q`` quantile of a cumulative histogram, interpolated linearly inside the bucket
    it falls in (Prometheus' ``histogram_quantile``); None when it is empty."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower  # above the highest finite bound: that bound is all we know
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


async def scrape(
    session: aiohttp.ClientSession,
    endpoints: Iterable[str],
    service: str,
    tls: ssl.SSLContext | None = None,
) -> Snapshot:
    """The sum of ``service``'s counts over the replicas at ``endpoints`` (http:// URLs; over
    HTTPS with the ``tls`` context when the app speaks mTLS); ConnectionError naming the first
    that did not answer."""

    async def one(endpoint: str) -> Snapshot:
        url = endpoint.replace("http://", "https://", 1) if tls is not None else endpoint
        try:
            timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT)
            get = session.get(f"{url}/metrics", timeout=timeout, ssl=tls if tls else False)
            async with get as resp:
                if resp.status != 200:
                    raise ConnectionError(f"{endpoint}/metrics answered {resp.status}")
                return parse(await resp.text(), service)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ConnectionError(f"{endpoint}/metrics: {type(exc).__name__}: {exc}") from None

    total = Snapshot()
    for snapshot in await asyncio.gather(*(one(e) for e in endpoints)):
        total = total + snapshot
    return total


def judge(canary: Sample, stable: Sample, settings: DeployConfig) -> str | None:
    """Why the canary fails against the stable version, or None while it holds (or has
    handled too few calls to tell)."""
    if canary.requests < settings.min_requests:
        return None
    if canary.error_rate - stable.error_rate > settings.max_error_rate:
        return (
            f"error rate {canary.error_rate:.1%} against the stable version's "
            f"{stable.error_rate:.1%} (at most {settings.max_error_rate:.1%} more allowed)"
        )
    if canary.p99 is not None and canary.p99 > settings.p99_floor:
        limit = max(settings.p99_floor, (stable.p99 or 0.0) * settings.max_p99_ratio)
        if canary.p99 > limit:
            theirs = "-" if stable.p99 is None else f"{stable.p99 * 1000:.1f} ms"
            return (
                f"p99 {canary.p99 * 1000:.1f} ms against the stable version's {theirs} "
                f"(at most {settings.max_p99_ratio:g} times it, "
                f"and over {settings.p99_floor * 1000:g} ms)"
            )
    return None
