"""The testing kit: worker(), call(), fakes, event capture and the pytest fixtures."""

from __future__ import annotations

from typing import Any

import pytest
from shop.catalog import Catalog
from shop.inventory import Inventory
from shop.models import OrderLine
from shop.orders import Orders

import lumi
from lumi import testing


async def test_worker_fakes_every_capability_and_records_events() -> None:
    """worker() injects interface-specced AsyncMocks and captures published events."""
    orders = testing.worker(Orders)
    await orders.startup()
    orders.inventory.reserve.return_value = 250  # type: ignore[attr-defined]
    order = await orders.place("ada", [OrderLine(sku="pear", qty=2)])
    assert order.total_cents == 250
    orders.inventory.reserve.assert_awaited_once_with(sku="pear", qty=2)  # type: ignore[attr-defined]
    [event] = testing.published(orders)
    assert event.topic == "Orders.placed" and event.data["order_id"] == order.id


def test_fake_rejects_methods_the_real_service_lacks() -> None:
    """A FakeService only has the methods of the interface it stands in for."""
    orders = testing.worker(Orders)
    with pytest.raises(AttributeError, match="fake Inventory has no method 'reserv'"):
        orders.inventory.reserv  # type: ignore[attr-defined]  # noqa: B018


def test_worker_takes_explicit_fakes_and_rejects_unknown_ones() -> None:
    """Given capabilities are used as they are; unknown names are an error."""
    sentinel = object()
    assert testing.worker(Orders, inventory=sentinel).inventory is sentinel
    with pytest.raises(TypeError, match="Orders has no capability catalog"):
        testing.worker(Orders, catalog=object())


async def test_call_goes_through_validation_and_error_mapping() -> None:
    """testing.call() validates arguments and maps errors like a remote call."""
    catalog = testing.worker(Catalog)
    product = await testing.call(catalog, "product", sku="apple")
    assert product.price_cents == 50
    with pytest.raises(lumi.NotFound, match="no product 'fig'"):
        await testing.call(catalog, "product", sku="fig")
    with pytest.raises(lumi.InvalidArgument, match="sku: Field required"):
        await testing.call(catalog, "product")


async def test_lumi_app_fixture_starts_and_stops(lumi_app: Any, lumi_events: Any) -> None:
    """The pytest plugin's lumi_app fixture starts an app; lumi_events captures its events."""
    app = await lumi_app([Catalog, Inventory, Orders])
    events = lumi_events(app)
    await app.client(Orders).place(customer="cy", lines=[{"sku": "apple", "qty": 1}])
    assert events.topics() == ["Orders.placed"]


def test_lumi_worker_fixture(lumi_worker: Any) -> None:
    """lumi_worker is testing.worker."""
    assert isinstance(lumi_worker(Catalog), Catalog)


async def test_wait_until_times_out_with_the_condition_named() -> None:
    """wait_until raises TimeoutError naming what it waited for."""
    with pytest.raises(TimeoutError, match="waiting for the moon"):
        await testing.wait_until(lambda: False, timeout=0.05, message="the moon")
