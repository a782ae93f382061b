"""Config keys that name a service, a capability or a transport must name one that exists, in
the base file and in every environment: one ConfigError with a did-you-mean."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

import lumi
from lumi.config import load_config
from tests.conftest import SHOP

SERVICES = """
import lumi

class Inventory(lumi.Service):
    @lumi.api
    async def reserve(self, sku: str) -> bool:
        return True

class Orders(lumi.Service):
    inventory: Inventory

    @lumi.api
    async def place(self, sku: str) -> str:
        return sku
"""


def app(tmp_path: Path, extra: str) -> Path:
    """An app of Orders -> Inventory (a module of its own name) with ``extra`` config."""
    module = f"refs_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(SERVICES)
    (tmp_path / "lumi.toml").write_text(
        f'[app]\nname = "t"\nservices = ["{module}:Inventory", "{module}:Orders"]\n' + extra
    )
    return tmp_path


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "[services.Orders.capabilities.Inventry]\ntimeout = 2\n",
            "services.Orders.capabilities.Inventry: Orders has no capability 'Inventry'; "
            "did you mean 'Inventory'? (its capabilities: Inventory)",
        ),
        (
            "[services.Inventory.capabilities.Orders]\nretry = 2\n",
            "services.Inventory.capabilities.Orders: Inventory has no capability 'Orders' "
            "(it has none; a capability is an annotation naming another service",
        ),
        (
            "[env.prod.services.Orders.capabilities.Inventroy]\ntimeout = 1\n",
            "env.prod.services.Orders.capabilities.Inventroy: Orders has no capability "
            "'Inventroy'; did you mean 'Inventory'?",
        ),
        (
            "[env.prod.services.Ordres]\nreplicas = 2\n",
            "env.prod.services.Ordres: no service named 'Ordres' in app.services; "
            "did you mean 'Orders'? (services: Inventory, Orders)",
        ),
        (
            '[services.Orders.capabilities.Inventory]\ntransport = "grpc"\n',
            "services.Orders.capabilities.Inventory.transport: Inventory does not serve 'grpc' "
            "(it serves: http; add it to services.Inventory.rpc, or pick one of those)",
        ),
        (
            '[services.Inventory]\nrpc = "thrift"\n'
            '[env.mixed.services.Orders.capabilities.Inventory]\ntransport = "http"\n',
            "env.mixed.services.Orders.capabilities.Inventory.transport: Inventory does not "
            "serve 'http' (it serves: thrift;",
        ),
    ],
)
def test_a_name_that_does_not_exist_is_one_error(tmp_path: Path, extra: str, message: str) -> None:
    """Misspelt service, capability or transport names fail at load, naming file and key,
    whichever environment is chosen."""
    folder = app(tmp_path, extra)
    for env in (None, "prod") if "[env.prod" in extra else (None,):
        with pytest.raises(lumi.ConfigError) as info:
            load_config(folder, env).load_services()
        assert str(info.value).startswith(f"{folder / 'lumi.toml'}: {message}"), str(info.value)


def test_names_that_exist_are_accepted(tmp_path: Path) -> None:
    """A capability's settings and a transport the callee serves load (its own rpc list
    counts, in an environment too)."""
    folder = app(
        tmp_path,
        "[services.Orders.capabilities.Inventory]\ntimeout = 2\n"
        '[env.both.services.Inventory]\nrpc = ["thrift", "http"]\n'
        '[env.both.services.Orders.capabilities.Inventory]\ntransport = "thrift"\n',
    )
    assert [c.name for c in load_config(folder).load_services()] == ["Inventory", "Orders"]
    both = load_config(folder, "both")
    both.load_services()
    assert both.service("Orders").capabilities["Inventory"].transport == "thrift"


@pytest.mark.parametrize("env", [None, "grpc", "thrift", "mixed", "test"])
def test_the_example_shop_names_only_what_exists(env: str | None) -> None:
    """Every environment of the example shop passes the checks."""
    assert len(load_config(SHOP, env).load_services()) == 4
