"""Metrics: request and client counters and histograms, event counters, the exposition."""

from __future__ import annotations

import pydantic
import pytest

import lumi
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
