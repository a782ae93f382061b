"""``pool_size`` from configuration reaches the channels a replica calls through, and the
configuration in docs/hop.md is valid as written."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from lumi.brokers.memory import MemoryBroker
from lumi.config import load_config
from lumi.model.errors import ConfigError
from lumi.runtimes import stack
from lumi.runtimes.base import ReplicaSpec
from lumi.runtimes.replica import ReplicaRunner
from tests.conftest import ROOT, SHOP

DOC = ROOT / "docs" / "hop.md"


def shop_with(tmp_path: Path, toml: str) -> Path:
    app = tmp_path / "shop-app"
    shutil.copytree(SHOP / "shop", app / "shop", ignore=shutil.ignore_patterns("__pycache__"))
    # the replicas are built without lumi run's CA: no certificates to give them
    (app / "lumi.toml").write_text(toml + "\n[security]\nmtls = false\n")
    return app


def pools(app: Path, service: str) -> dict[str, int]:
    """Pool size of each channel the replica of ``service`` calls through, by capability."""
    config = load_config(app)
    endpoints = {name: ["http://127.0.0.1:9"] for name in ("Catalog", "Inventory", "Orders")}
    spec = ReplicaSpec(str(app), None, service, 0, endpoints)
    runner = ReplicaRunner(spec, config, {}, stack.RuntimeServices(), broker=MemoryBroker())
    return {
        name: balancer.channels[0].pool.size  # type: ignore[attr-defined]
        for name, balancer in runner.balancers.items()
    }


def test_the_documented_configuration_sets_the_pools(tmp_path: Path) -> None:
    """docs/hop.md's lumi.toml: 256 for every capability, 512 for Orders → Inventory."""
    toml = re.findall(r"```toml\n(.*?)```", DOC.read_text(), re.S)[0]
    app = shop_with(tmp_path, toml)
    assert pools(app, "Orders")["Inventory"] == 512
    assert pools(app, "Inventory") == {"Catalog": 256}


def test_defaults_pool_size_applies_to_every_capability(tmp_path: Path) -> None:
    """defaults.pool_size is the size of every channel without a capability setting."""
    services = '["shop.catalog:Catalog", "shop.inventory:Inventory", "shop.orders:Orders"]'
    app = shop_with(
        tmp_path,
        f'[app]\nname = "shop"\nservices = {services}\n[defaults]\npool_size = 8\n',
    )
    assert pools(app, "Orders")["Inventory"] == 8
    assert pools(app, "Inventory") == {"Catalog": 8}


def test_a_pool_size_below_one_is_refused_naming_the_key(tmp_path: Path) -> None:
    """pool_size = 0 is a ConfigError naming the key."""
    app = shop_with(
        tmp_path,
        '[app]\nname = "shop"\nservices = ["shop.catalog:Catalog"]\n[defaults]\npool_size = 0\n',
    )
    with pytest.raises(ConfigError, match="defaults.pool_size"):
        load_config(app)
