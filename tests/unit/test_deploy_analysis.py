"""Canary analysis: counts read from a real /metrics page, p99 as Prometheus estimates it, and
the verdicts against the stable version."""

from __future__ import annotations

import pytest

from lumi.config import DeployConfig
from lumi.deploy.analysis import Snapshot, judge, parse, quantile
from lumi.deploy.state import Sample
from lumi.runtime_services.observability.metrics import Metrics


def page(calls: list[tuple[str, str, float]], service: str = "Catalog") -> str:
    """The /metrics text of a replica that handled ``(method, code, seconds)`` calls."""
    metrics = Metrics()
    for method, code, seconds in calls:
        metrics.request(service, method, code, seconds)
    metrics.request("Other", "m", "INTERNAL", 9.0)  # another service's calls never count
    return metrics.render().decode()


def test_parse_sums_methods_and_counts_only_the_callees_faults() -> None:
    """Calls of every method are summed; INTERNAL/UNAVAILABLE are errors, NOT_FOUND is not."""
    text = page(
        [("product", "OK", 0.002)] * 6
        + [("products", "OK", 0.004)] * 2
        + [("product", "NOT_FOUND", 0.001)]
        + [("product", "INTERNAL", 0.3), ("product", "UNAVAILABLE", 0.02)]
    )
    snapshot = parse(text, "Catalog")
    assert snapshot.requests == 11 and snapshot.errors == 2
    assert dict(snapshot.buckets)[float("inf")] == 11
    assert dict(snapshot.buckets)[0.0025] == 7  # six 2 ms calls and the 1 ms one
    assert parse(text, "Nobody") == Snapshot()


def test_event_deliveries_count_as_calls_of_their_consumer_group() -> None:
    """A subscriber's handled events are calls, its failed deliveries errors (no latency)."""
    metrics = Metrics()
    for ok in (True, True, False):
        metrics.delivery("Orders.placed", "Mailer", ok, attempt=1, dead=False)
    metrics.delivery("Orders.placed", "Mailer-audit", False, attempt=2, dead=True)
    metrics.delivery("Orders.placed", "Mailers", False, attempt=1, dead=False)  # another service
    snapshot = parse(metrics.render().decode(), "Mailer")
    assert (snapshot.requests, snapshot.errors) == (4, 2)
    assert snapshot.sample().p99 is None


def test_a_window_is_the_difference_of_two_snapshots() -> None:
    """Subtracting the baseline leaves only the calls handled since."""
    before = parse(page([("product", "OK", 0.002)] * 5), "Catalog")
    after = parse(
        page([("product", "OK", 0.002)] * 5 + [("product", "INTERNAL", 0.8)] * 3), "Catalog"
    )
    window = (after - before).sample()
    assert window.requests == 3 and window.errors == 3 and window.error_rate == 1.0
    assert window.p99 is not None and 0.5 < window.p99 <= 1.0


def test_quantile_interpolates_like_histogram_quantile() -> None:
    """The rank falls in a bucket and is interpolated linearly inside it; beyond the last
    finite bound the bound is the answer; nothing observed gives None."""
    buckets = [(0.1, 50.0), (0.2, 90.0), (0.5, 100.0), (float("inf"), 100.0)]
    assert quantile(0.5, buckets) == pytest.approx(0.1)
    assert quantile(0.7, buckets) == pytest.approx(0.15)  # rank 70: halfway through 50..90
    assert quantile(0.99, buckets) == pytest.approx(0.2 + 0.3 * 9 / 10)
    assert quantile(0.99, [(0.1, 0.0), (float("inf"), 10.0)]) == 0.1
    assert quantile(0.99, [(0.1, 0.0), (float("inf"), 0.0)]) is None


SETTINGS = DeployConfig(min_requests=10, max_error_rate=0.02, max_p99_ratio=2.0, p99_floor=0.05)


def test_too_few_calls_give_no_verdict() -> None:
    """Below min_requests even an all-failing canary is not judged yet."""
    assert judge(Sample(requests=9, errors=9), Sample(requests=100), SETTINGS) is None


def test_the_error_rate_is_compared_with_the_stable_versions() -> None:
    """A canary may fail as often as stable does, plus the margin; more fails the step."""
    stable = Sample(requests=100, errors=5)
    assert judge(Sample(requests=100, errors=6), stable, SETTINGS) is None
    reason = judge(Sample(requests=100, errors=8), stable, SETTINGS)
    assert reason == (
        "error rate 8.0% against the stable version's 5.0% (at most 2.0% more allowed)"
    )


def test_latency_fails_only_above_the_floor_and_the_ratio() -> None:
    """A p99 twice the stable one is allowed; more fails, unless it is under the floor."""
    stable = Sample(requests=100, p99=0.1)
    assert judge(Sample(requests=50, p99=0.2), stable, SETTINGS) is None
    assert judge(Sample(requests=50, p99=0.04), Sample(requests=100, p99=0.001), SETTINGS) is None
    reason = judge(Sample(requests=50, p99=0.25), stable, SETTINGS)
    assert reason is not None and reason.startswith(
        "p99 250.0 ms against the stable version's 100.0 ms"
    )
    # no stable traffic (every call on the canary): only the floor applies
    assert judge(Sample(requests=50, p99=0.3), Sample(), SETTINGS) is not None
