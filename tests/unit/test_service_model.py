"""The service model: decorators register metadata only; bad services fail at reflection."""

from __future__ import annotations

import socket

import pydantic
import pytest

import lumi
from lumi.model.reflect import reflect


class Reserved(pydantic.BaseModel):
    sku: str
    qty: int


class Inventory(lumi.Service):
    """Stock."""

    reserved = lumi.event(Reserved, key="sku")

    @lumi.api(idempotent=True, timeout=2.0, retry=4)
    async def reserve(self, sku: str, qty: int = 1) -> bool:
        """Reserve stock."""
        return qty < 10

    @lumi.api(name="count-all")
    def count(self) -> int:
        return 3


def test_decorators_return_the_function_unchanged() -> None:
    """A decorated method is still a plain method a unit test can call."""
    assert Inventory.count(Inventory()) == 3
    assert Inventory.__dict__["reserve"].__name__ == "reserve"


def test_api_options_reach_the_interface() -> None:
    """name, idempotent, timeout, retry and the docstring are recorded."""
    iface = lumi.interface(Inventory)
    assert set(iface.methods) == {"reserve", "count-all"}
    reserve = iface.methods["reserve"]
    assert reserve.idempotent is True
    assert reserve.timeout == 2.0
    assert reserve.retry == lumi.Retry(attempts=4)
    assert reserve.doc == "Reserve stock."
    assert reserve.param_names == ["sku", "qty"]
    assert reserve.required_params == ["sku"]
    assert iface.doc == "Stock."
    assert iface.methods["count-all"].idempotent is False


def test_event_descriptor_on_class_and_instance() -> None:
    """On the class an event is its spec; on an instance it is a publisher."""
    assert Inventory.reserved.topic == "Inventory.reserved"
    publisher = Inventory().reserved
    assert publisher.spec is Inventory.reserved
    assert lumi.interface(Inventory).events["reserved"].key == "sku"


async def test_publishing_outside_a_runtime_says_what_to_do() -> None:
    """Publishing from a bare instance explains that no runtime is attached."""
    with pytest.raises(RuntimeError, match="not running in a Lumi runtime"):
        await Inventory().reserved.publish(Reserved(sku="a", qty=1))


def test_subscriptions_and_capabilities_are_recorded() -> None:
    """A subscriber lists its subscription; a capability annotation becomes a requirement."""

    class Orders(lumi.Service):
        inventory: Inventory

        @lumi.subscribe(Inventory.reserved, max_attempts=3)
        async def on_reserved(self, event: Reserved) -> None: ...

        @lumi.subscribe("Billing.charged", start="latest")
        async def on_charged(self, event: dict[str, int]) -> None: ...

    iface = lumi.interface(Orders)
    assert iface.requires == ["Inventory"]
    assert [(s.topic, s.handler, s.max_attempts, s.start) for s in iface.subscriptions] == [
        ("Billing.charged", "on_charged", 5, "latest"),
        ("Inventory.reserved", "on_reserved", 3, "earliest"),
    ]
    assert reflect(Orders).capabilities == {"inventory": Inventory}


def test_service_name_and_version_are_class_attributes() -> None:
    """``name`` and ``version`` override the class name and the default version."""

    class Billing(lumi.Service):
        name = "billing-v2"
        version = "2.1.0"

    iface = lumi.interface(Billing)
    assert (iface.name, iface.version) == ("billing-v2", "2.1.0")


def _define(body: str, namespace: dict[str, object] | None = None) -> None:
    scope: dict[str, object] = {"lumi": lumi, "socket": socket, **(namespace or {})}
    exec(f"class Bad(lumi.Service):\n{body}", scope)
    reflect(scope["Bad"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "    @lumi.api\n    def m(self, s: socket.socket) -> None: ...",
            "Bad.m: parameter 's' has type socket",
        ),
        (
            "    @lumi.api\n    def m(self, x) -> None: ...",
            "Bad.m: parameter 'x' has no type annotation",
        ),
        ("    @lumi.api\n    def m(self, x: int): ...", "Bad.m: no return annotation"),
        (
            "    @lumi.api\n    def m(self, *xs: int) -> None: ...",
            "Bad.m: parameter 'xs' is *args/**kwargs",
        ),
        (
            "    @lumi.api\n    def m(self, x: int, /) -> None: ...",
            "Bad.m: parameter 'x' is positional-only",
        ),
        (
            "    @lumi.api\n    def m(self) -> object: ...",
            "Bad.m: return value has type object",
        ),
        (
            "    @lumi.api\n    async def m(self):\n        yield 1",
            "Bad.m: generators cannot be exported",
        ),
        (
            "    @lumi.api(name='x')\n    def a(self) -> None: ...\n"
            "    @lumi.api(name='x')\n    def b(self) -> None: ...",
            "two methods are exported as 'x'",
        ),
        (
            "    @lumi.subscribe('A.b')\n    async def on(self, a: int, b: int) -> None: ...",
            "Bad.on: an event handler takes exactly one parameter",
        ),
        ("    ev = lumi.event(socket.socket)", "Bad.ev: event payload has type socket"),
        ("    ev = lumi.event(dict[str, int], key='k')", "key='k' is not a field"),
        ("    other: 'Missing'", "cannot resolve annotation 'Missing'"),
    ],
)
def test_bad_definitions_fail_with_one_clear_error(body: str, message: str) -> None:
    """Each definition mistake is a DefinitionError naming service, member and cause."""
    with pytest.raises(lumi.DefinitionError) as info:
        _define(body)
    assert message in str(info.value)


def test_bad_decorator_arguments_are_rejected_at_once() -> None:
    """Options that make no sense fail where they are written."""
    with pytest.raises(ValueError, match="timeout must be positive"):
        lumi.api(timeout=0)
    with pytest.raises(ValueError, match="max_attempts"):
        lumi.subscribe("A.b", max_attempts=0)
    with pytest.raises(ValueError, match="start must be"):
        lumi.subscribe("A.b", start="middle")
    with pytest.raises(TypeError, match="Service.event"):
        lumi.subscribe("nodot")
    with pytest.raises(TypeError, match="retry must be"):
        lumi.api(retry="often")  # type: ignore[call-overload]


def test_non_service_cannot_be_reflected() -> None:
    """reflect() only takes Service subclasses."""
    with pytest.raises(lumi.DefinitionError, match="not a lumi.Service subclass"):
        reflect(int)


def test_parameter_names_that_clash_with_pydantic_are_served() -> None:
    """A parameter called ``json`` or ``schema`` works (pydantic reserves those names)."""

    class Odd(lumi.Service):
        @lumi.api
        def m(self, json: str, schema: int) -> str:
            return f"{json}{schema}"

    iface = lumi.interface(Odd)
    assert iface.methods["m"].param_names == ["json", "schema"]
    assert set(iface.methods["m"].params["properties"]) == {"json", "schema"}
