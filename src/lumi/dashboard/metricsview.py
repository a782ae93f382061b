"""Per-method metrics for the dashboard, from the same ``GET /metrics`` every replica serves.

A sampler scrapes every replica every few seconds and sums the ``lumi_request_duration_seconds``
histograms per (service, method). Rates come from the difference between the last two samples
(a counter that went down means the replica restarted: its new value is the increase); latency
percentiles are interpolated within the histogram buckets, as Prometheus's
``histogram_quantile`` does, over everything since the replicas started.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import ssl
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from lumi.dashboard.hub import Hub

Key = tuple[str, str]  # (service, method)


class Histogram:
    """Cumulative bucket counts (by upper bound), count and sum; errors counted apart."""

    def __init__(self) -> None:
        self.buckets: dict[float, float] = {}
        self.count = 0.0
        self.sum = 0.0
        self.errors = 0.0

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile in seconds (None without observations)."""
        if self.count <= 0:
            return None
        rank = q * self.count
        lower, below = 0.0, 0.0
        for bound in sorted(self.buckets):
            cumulative = self.buckets[bound]
            if cumulative >= rank:
                if math.isinf(bound):
                    return lower  # the highest finite bound: as far as buckets can tell
                width = cumulative - below
                return lower + (bound - lower) * ((rank - below) / width if width else 1.0)
            lower, below = bound, cumulative
        return lower


def parse(text: str) -> dict[Key, Histogram]:
    """Per-method histograms from one Prometheus text exposition."""
    found: dict[Key, Histogram] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "lumi_request_duration_seconds":
            continue
        for sample in family.samples:
            labels = sample.labels
            key = (labels.get("service", ""), labels.get("method", ""))
            hist = found.setdefault(key, Histogram())
            failed = labels.get("code", "OK") != "OK"
            if sample.name.endswith("_bucket"):
                bound = float(labels["le"])
                hist.buckets[bound] = hist.buckets.get(bound, 0.0) + sample.value
            elif sample.name.endswith("_count"):
                hist.count += sample.value
                if failed:
                    hist.errors += sample.value
            elif sample.name.endswith("_sum"):
                hist.sum += sample.value
    return found


def merge(into: dict[Key, Histogram], more: dict[Key, Histogram]) -> None:
    for key, hist in more.items():
        target = into.setdefault(key, Histogram())
        for bound, value in hist.buckets.items():
            target.buckets[bound] = target.buckets.get(bound, 0.0) + value
        target.count += hist.count
        target.sum += hist.sum
        target.errors += hist.errors


def _increase(now: float, before: float) -> float:
    return now if now < before else now - before


class MetricsSampler:
    """Scrapes every replica's ``/metrics`` every ``interval`` seconds; publishes ``metrics``."""

    def __init__(
        self,
        endpoints: Callable[[], dict[str, list[str]]],
        hub: Hub,
        *,
        interval: float = 2.0,
        tls: Callable[[], ssl.SSLContext | None] | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.tls = tls  # mTLS: the operator's client context
        self.hub = hub
        self.interval = interval
        self.last: tuple[float, dict[Key, Histogram]] | None = None
        self.previous: tuple[float, dict[Key, Histogram]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0))
        self._task = asyncio.create_task(self._run(), name="lumi-dashboard-metrics")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        while True:
            await self.sample()
            self.hub.publish("metrics", self.table())
            await asyncio.sleep(self.interval)

    async def _scrape(self, url: str) -> dict[Key, Histogram]:
        assert self._session is not None
        context = self.tls() if self.tls is not None else None
        if context is not None:
            url = url.replace("http://", "https://", 1)
        try:
            async with self._session.get(f"{url}/metrics", ssl=context or False) as resp:
                if resp.status != 200:
                    return {}
                return parse(await resp.text())
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
            return {}

    async def sample(self) -> None:
        """Take one sample of every replica (distinct endpoints: in-process apps share one)."""
        # /metrics is served next to HTTP; replicas on other transports only are not scraped.
        urls = sorted(
            {url for urls in self.endpoints().values() for url in urls if url.startswith("http")}
        )
        results = await asyncio.gather(*(self._scrape(url) for url in urls))
        total: dict[Key, Histogram] = {}
        for result in results:
            merge(total, result)
        self.previous, self.last = self.last, (time.time(), total)

    def table(self) -> list[dict[str, Any]]:
        """One row per method: calls, rate and error rate since the last sample, percentiles."""
        if self.last is None:
            return []
        at, now = self.last
        rows: list[dict[str, Any]] = []
        for (service, method), hist in sorted(now.items()):
            rate = error_rate = 0.0
            if self.previous is not None:
                before_at, before = self.previous
                old = before.get((service, method), Histogram())
                elapsed = max(at - before_at, 1e-6)
                calls = _increase(hist.count, old.count)
                rate = calls / elapsed
                errors = _increase(hist.errors, old.errors)
                error_rate = errors / calls if calls else 0.0
            quantiles = {q: hist.quantile(q) for q in (0.5, 0.95, 0.99)}
            rows.append(
                {
                    "service": service,
                    "method": method,
                    "calls": int(hist.count),
                    "errors": int(hist.errors),
                    "rate": round(rate, 2),
                    "error_rate": round(error_rate, 4),
                    "error_share": round(hist.errors / hist.count, 4) if hist.count else 0.0,
                    "p50_ms": _ms(quantiles[0.5]),
                    "p95_ms": _ms(quantiles[0.95]),
                    "p99_ms": _ms(quantiles[0.99]),
                    "mean_ms": _ms(hist.sum / hist.count) if hist.count else None,
                }
            )
        return rows


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
