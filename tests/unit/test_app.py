"""The in-process App: the example shop end to end, isolation, lifecycle and fakes."""

from __future__ import annotations

import subprocess
import sys

import pydantic
import pytest
from shop.catalog import Catalog
from shop.inventory import Inventory
from shop.mailer import Mailer
from shop.models import OrderLine
from shop.orders import Orders

import lumi
from lumi.testing import capture_events, wait_until
from tests.conftest import SHOP

SHOP_SERVICES = [Catalog, Inventory, Orders, Mailer]


async def test_shop_rpc_chain_event_and_subscriber() -> None:
    """Orders → Inventory → Catalog, then Orders.placed reaches Mailer."""
    async with lumi.App(SHOP_SERVICES) as app:
        with capture_events(app) as events:
            order = await app.client(Orders).place(
                customer="ada", lines=[OrderLine(sku="apple", qty=2)]
            )
            assert order.total_cents == 100 and order.customer == "ada"
            assert await app.client(Inventory).available(sku="apple") == 8
            await events.wait_for(1, topic="Orders.placed")
            assert events[0].data == {"order_id": order.id, "customer": "ada", "total_cents": 100}
            mailer = app.client(Mailer)
            await wait_until(lambda: len(app.service(Mailer).outbox) == 1, message="mail sent")
            assert await mailer.sent(customer="ada") == [
                f"Dear ada, order {order.id} is confirmed."
            ]


async def test_typed_errors_cross_the_chain() -> None:
    """A typed error raised two hops away reaches the caller with its type and details."""
    async with lumi.App(SHOP_SERVICES) as app:
        with pytest.raises(lumi.NotFound, match="no product 'kiwi'"):
            await app.client(Orders).place(customer="ada", lines=[{"sku": "kiwi", "qty": 1}])
        with pytest.raises(lumi.FailedPrecondition) as info:
            await app.client(Orders).place(customer="ada", lines=[{"sku": "melon", "qty": 5}])
        assert info.value.details == {"sku": "melon", "available": 1}
        with pytest.raises(lumi.InvalidArgument, match="lines.0.qty"):
            await app.client(Orders).place(customer="ada", lines=[{"sku": "pear", "qty": 0}])


class Holder(lumi.Service):
    async def startup(self) -> None:
        self.kept: list[list[int]] = []

    @lumi.api
    async def keep(self, items: list[int]) -> list[int]:
        self.kept.append(items)
        return items


async def test_arguments_and_results_are_copied() -> None:
    """Caller and callee never share a mutable object."""
    async with lumi.App([Holder]) as app:
        mine = [1, 2]
        returned = await app.client(Holder).keep(mine)
        mine.append(3)
        returned.append(4)
        assert app.service(Holder).kept == [[1, 2]]
        assert returned is not mine


order: list[str] = []


class First(lumi.Service):
    async def startup(self) -> None:
        order.append("start First")

    def shutdown(self) -> None:  # sync hooks are allowed too
        order.append("stop First")


class Second(lumi.Service):
    first: First

    def startup(self) -> None:
        order.append("start Second")

    async def shutdown(self) -> None:
        order.append("stop Second")


async def test_hooks_run_in_dependency_order() -> None:
    """startup in dependency order, shutdown in reverse."""
    order.clear()
    async with lumi.App([Second, First]):
        assert order == ["start First", "start Second"]
    assert order == ["start First", "start Second", "stop Second", "stop First"]


class Broken(lumi.Service):
    first: First

    async def startup(self) -> None:
        raise OSError("database is down")


async def test_failing_startup_names_the_service_and_undoes_the_rest() -> None:
    """A startup hook that raises stops the app with the service named; started ones stop."""
    order.clear()
    with pytest.raises(lumi.AppError, match="Broken: startup failed: OSError: database is down"):
        async with lumi.App([First, Broken]):
            pass
    assert order == ["start First", "stop First"]


class FakeInventory:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    async def reserve(self, sku: str, qty: int) -> int:
        self.calls.append((sku, qty))
        return 999


async def test_capability_can_be_replaced_by_a_fake() -> None:
    """fakes= swaps a capability; the faked service need not be in the app."""
    fake = FakeInventory()
    async with lumi.App([Orders], fakes={Inventory: fake}) as app:
        order = await app.client(Orders).place(customer="bo", lines=[{"sku": "x", "qty": 3}])
    assert order.total_cents == 999 and fake.calls == [("x", 3)]


async def test_missing_capability_is_reported() -> None:
    """An app lacking a required service fails to assemble, naming it."""
    with pytest.raises(lumi.AppError, match="Orders requires Inventory"):
        lumi.App([Orders])


async def test_client_of_a_service_not_in_the_app() -> None:
    """Asking for a client of a service outside the app is a clear error."""
    async with lumi.App([Catalog]) as app:
        with pytest.raises(lumi.AppError, match="Orders is not in this app"):
            app.client(Orders)
        with pytest.raises(AttributeError, match="did you mean 'product'"):
            app.client(Catalog).produce  # noqa: B018


class Payload(pydantic.BaseModel):
    n: int


class Source(lumi.Service):
    happened = lumi.event(Payload)

    @lumi.api
    async def fire(self, n: int) -> str:
        return await self.happened.publish(Payload(n=n))

    @lumi.api
    async def fire_bad(self) -> str:
        return await self.happened.publish({"n": "not a number"})  # type: ignore[arg-type]


class Flaky(lumi.Service):
    async def startup(self) -> None:
        self.attempts: list[int] = []

    @lumi.subscribe(Source.happened, max_attempts=3)
    async def on_happened(self, event: Payload) -> None:
        ctx = lumi.context()
        assert ctx is not None and ctx.kind == "event"
        self.attempts.append(ctx.attempt)
        if event.n < 0:
            raise RuntimeError("cannot handle negatives")


async def test_publish_validates_and_handlers_are_retried_then_dead_lettered() -> None:
    """A bad payload fails at the publisher; a failing handler is retried, then dead-lettered."""
    async with lumi.App([Source, Flaky]) as app:
        with pytest.raises(lumi.InvalidArgument, match="invalid payload for event Source.happened"):
            await app.client(Source).fire_bad()
        await app.client(Source).fire(n=-1)
        flaky = app.service(Flaky)
        await wait_until(lambda: flaky.attempts == [1, 2, 3], message="three attempts")
        broker = app.broker
        await wait_until(
            lambda: len(broker.topics.get("Source.happened.Flaky.dlq", [])) == 1,  # type: ignore[attr-defined]
            message="dead letter",
        )


def test_five_line_script_runs_the_shop() -> None:
    """examples/shop/script.py places an order in one process."""
    out = subprocess.run(
        [sys.executable, "script.py"], cwd=SHOP, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "customer='ada'" in out.stdout and "total_cents=100" in out.stdout
