"""The example shop runs on gRPC, on Thrift and mixed, chosen by configuration alone: orders are
placed through the Orders → Inventory → Catalog chain over the configured wires, the Mailer gets
the event, ``lumi ls`` lists every endpoint and ``lumi call --transport`` picks one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import SHOP
from tests.integration.harness import LumiRun, copy_app, wait

pytestmark = pytest.mark.slow
Start = Callable[..., LumiRun]


def lumi(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lumi.cli.main", *args],
        capture_output=True, text=True, timeout=60, env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip


def call(app: Path, target: str, *args: str) -> object:
    result = lumi("call", target, *args, "--app", str(app))
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def schemes(run: LumiRun, service: str) -> set[str]:
    return {e.split("://")[0] for e in run.registry()["services"][service]["endpoints"]}


def place_and_confirm(app: Path, customer: str, *args: str) -> dict[str, object]:
    lines = json.dumps({"customer": customer, "lines": [{"sku": "apple", "qty": 2}]})
    order = call(app, "Orders.place", "--json", lines, *args)
    assert isinstance(order, dict) and order["total_cents"] == 100
    wait(
        lambda: call(app, "Mailer.sent", f"customer={customer}"),
        timeout=30,
        message="the confirmation",
    )
    return order


@pytest.mark.parametrize("env", ["grpc", "thrift"])
def test_shop_on_one_wire(lumi_run: Start, tmp_path: Path, env: str) -> None:
    """Every service on gRPC (or Thrift): the chain works and errors keep their type."""
    app = copy_app(SHOP, tmp_path / "shop")
    run = lumi_run(app, "--env", env)
    run.wait_ready()
    for service in ("Catalog", "Inventory", "Orders", "Mailer"):
        assert schemes(run, service) == {env}
    order = place_and_confirm(app, "ada")
    assert call(app, "Orders.get", f"order_id={order['id']}") == order
    missing = lumi("call", "Catalog.product", "sku=kiwi", "--app", str(app))
    assert missing.returncode != 0 and "NOT_FOUND" in missing.stdout + missing.stderr
    listing = lumi("ls", "--app", str(app))
    assert listing.stdout.count(f"{env}://127.0.0.1:") == 5  # Catalog has two replicas


def test_shop_mixed(lumi_run: Start, tmp_path: Path) -> None:
    """Catalog on Thrift, Inventory on gRPC+HTTP, Orders on all three: calls cross wires, and
    ``lumi call --transport`` reaches Orders over each of its three."""
    app = copy_app(SHOP, tmp_path / "shop")
    run = lumi_run(app, "--env", "mixed")
    run.wait_ready()
    assert schemes(run, "Catalog") == {"thrift"}
    assert schemes(run, "Inventory") == {"grpc", "http"}
    assert schemes(run, "Orders") == {"http", "grpc", "thrift"}
    order = place_and_confirm(app, "bo")
    for transport in ("http", "grpc", "thrift"):
        assert call(app, "Orders.get", f"order_id={order['id']}", "--transport", transport) == order
    assert call(app, "Inventory.available", "sku=apple", "--transport", "grpc") == 8
    wrong = lumi("call", "Catalog.products", "--transport", "grpc", "--app", str(app))
    assert wrong.returncode != 0
    assert "Catalog does not serve 'grpc'" in wrong.stdout + wrong.stderr
    listing = lumi("ls", "--app", str(app)).stdout
    assert "grpc://127.0.0.1:" in listing and "thrift://127.0.0.1:" in listing
