"""[deploy] settings, the deployed app's generated lumi.toml and the route table replicas follow."""

from __future__ import annotations

from pathlib import Path

import pytest

import lumi
from lumi.config import load_config
from lumi.deploy.appdir import write_app
from lumi.runtimes.routes import RouteFollower, Routes, read_routes, write_routes
from lumi.testing import wait_until
from tests.conftest import SHOP

BASE = '[app]\nname = "t"\nservices = ["svc:A"]\n'


def test_deploy_settings_default_and_per_environment(tmp_path: Path) -> None:
    """[deploy] sets every environment's strategy; [env.NAME.deploy] overrides parts of it."""
    (tmp_path / "lumi.toml").write_text(
        BASE + "[deploy]\nbake = 5\n[env.local.deploy]\nstrategy = 'rolling'\n[env.prod]\n"
    )
    local, prod = load_config(tmp_path, "local"), load_config(tmp_path, "prod")
    assert (local.deploy.strategy, local.deploy.bake) == ("rolling", 5.0)
    assert (prod.deploy.strategy, prod.deploy.weights, prod.deploy.bake) == (
        "canary",
        [10, 50, 100],
        5.0,
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[deploy]\nweights = [10, 50]\n", "deploy.weights: weights must end at 100"),
        ("[deploy]\nweights = [50, 10, 100]\n", "deploy.weights: weights are rising percentages"),
        (
            "[env.local.deploy]\nstrategy = 'blue-green'\n",
            "env.local.deploy.strategy: Input should be 'rolling' or 'canary'",
        ),
        ("[deploy]\nbake = 0\n", "deploy.bake: Input should be greater than 0"),
        (
            "[deploy]\nmax_error_rate = 2\n",
            "deploy.max_error_rate: Input should be less than or equal to 1",
        ),
        ("[deploy]\nbakes = 1\n", "deploy.bakes: unknown key; did you mean 'bake'?"),
    ],
)
def test_bad_deploy_settings_name_the_key(tmp_path: Path, extra: str, message: str) -> None:
    """Each mistake in [deploy] is one ConfigError naming the key and what is valid."""
    (tmp_path / "lumi.toml").write_text(BASE + extra)
    with pytest.raises(lumi.ConfigError) as caught:
        load_config(tmp_path)
    assert message in str(caught.value)


def test_the_generated_config_runs_the_deployed_entries_as_configured(tmp_path: Path) -> None:
    """The deployed app folder's lumi.toml keeps the environment's bindings and settings,
    names only the deployed services, and loads under the same environment name."""
    source = load_config(SHOP, "mixed")
    entries = {"Catalog": "shop.catalog:Catalog", "Inventory": "shop.inventory:Inventory"}
    deployed = write_app(tmp_path, source, entries)
    assert deployed.environment == "mixed" and deployed.root == tmp_path.resolve()
    assert deployed.app.services == list(entries.values())
    for name in entries:
        assert deployed.binding(name) == source.binding(name)
        assert deployed.service(name).replicas == source.service(name).replicas
    assert set(deployed.services) == {"Catalog", "Inventory"}  # Orders' table left out
    assert deployed.resilience == source.resilience and deployed.defaults == source.defaults


async def test_a_route_follower_applies_each_new_table_once(tmp_path: Path) -> None:
    """The table in force at start, then each change within a poll; a rewrite of the same
    version, a missing file or a damaged one change nothing."""
    path = tmp_path / "routes.json"
    write_routes(path, Routes(1, {"A": {"http://a": 1.0}}))
    seen: list[Routes] = []
    follower = RouteFollower(path, seen.append, interval=0.01)
    follower.start()
    try:
        assert [r.version for r in seen] == [1]
        write_routes(path, Routes(2, {"A": {"http://a": 90.0, "http://c": 10.0}}))
        await wait_until(lambda: len(seen) == 2, message="the second table")
        assert seen[-1].services["A"]["http://c"] == 10.0
        write_routes(path, Routes(2, {"A": {"http://a": 1.0}}))
        follower.check()  # a new file, the version already applied
        path.write_text("{not json")
        follower.check()
        assert len(seen) == 2 and read_routes(path) is None
        path.unlink()
        write_routes(path, Routes(3, {}))
        await wait_until(lambda: len(seen) == 3, message="the third table")
    finally:
        await follower.aclose()
