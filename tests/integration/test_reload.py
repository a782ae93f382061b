"""``lumi run --reload`` end to end: edit the example shop while it serves calls."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lumi.runtimes.reload import code_of
from tests.conftest import SHOP
from tests.integration.harness import LumiRun, alive, copy_app, wait

pytestmark = pytest.mark.slow
Start = Callable[..., LumiRun]
REFS = {
    "Catalog": "shop.catalog",
    "Inventory": "shop.inventory",
    "Orders": "shop.orders",
    "Mailer": "shop.mailer",
}


def test_a_service_code_is_its_modules_but_not_other_services() -> None:
    """A service's code includes the shared models it imports, not the services it names."""
    names = {n: sorted(p.name for p in code_of(SHOP, m, REFS.values())) for n, m in REFS.items()}
    assert names == {
        "Catalog": ["__init__.py", "catalog.py", "models.py"],
        "Inventory": ["__init__.py", "inventory.py", "models.py"],
        "Orders": ["__init__.py", "models.py", "orders.py"],
        "Mailer": ["__init__.py", "mailer.py", "models.py"],
    }


class Load:
    """Calls to the services that are not edited, back to back, from a thread (plain HTTP, no
    retries); failures are kept. Inventory.available calls Catalog itself, through Lumi's
    client, so Catalog's restart is under load too."""

    CALLS = (
        ("Inventory", "available", {"sku": "apple"}),
        ("Mailer", "sent", {}),
        ("Orders", "get", {"order_id": "none"}),  # NOT_FOUND is its correct answer
    )

    def __init__(self, run: LumiRun) -> None:
        self.urls = {s: run.endpoint(s) for s, _m, _a in self.CALLS}
        self.run = run
        self.ok: collections.Counter[str] = collections.Counter()
        self.failures: list[str] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.run.client(timeout=10) as http:
            while not self.stopping.is_set():
                for service, method, args in self.CALLS:
                    try:
                        resp = http.post(f"{self.urls[service]}/{service}/{method}", json=args)
                        good = resp.status_code == 200 or (
                            method == "get" and resp.json().get("code") == "NOT_FOUND"
                        )
                        if good:
                            self.ok[service] += 1
                        else:
                            self.failures.append(
                                f"{service}.{method}: {resp.status_code} {resp.text}"
                            )
                    except httpx.HTTPError as exc:
                        self.failures.append(f"{service}.{method}: {type(exc).__name__}: {exc}")

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=30)


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """A private copy of the example shop."""
    return copy_app(SHOP, tmp_path / "shop")


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid``: replicas are forked by the template, a child of lumi run."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (int(c) for c in (task / "children").read_text().split()):
            found |= {child} | _descendants(child)
    return found


@pytest.fixture
def reloading(lumi_run: Start, shop: Path) -> Iterator[LumiRun]:
    """The shop under ``lumi run --reload``, watching; every process it started (replicas, the
    template they fork from and warm spares) is gone after it stops."""
    run = lumi_run(shop, "--reload", "--no-dashboard")
    run.wait_ready()
    run.wait_output("reload: watching")
    yield run
    started = _descendants(run.proc.pid)
    assert set(run.pids()) < started, "the template and the warm spares are started too"
    run.stop()
    wait(lambda: not any(alive(p) for p in started), timeout=30, message="no orphans")


def _pids(run: LumiRun) -> dict[str, list[int]]:
    services = run.registry()["services"]
    return {name: [r["pid"] for r in s["replicas"]] for name, s in services.items()}


def _price(http: httpx.Client, url: str, sku: str) -> Any:
    """Catalog.product(sku).price_cents. A kept-alive connection that the old replica closes as
    it drains can race a request on it; like any HTTP client of an idempotent method, retry."""
    for attempt in range(3):
        try:
            return http.post(f"{url}/Catalog/product", json={"sku": sku}).json()["price_cents"]
        except httpx.TransportError:
            if attempt == 2:
                raise
    return None


def test_an_edit_restarts_only_that_service_under_load(reloading: LumiRun, shop: Path) -> None:
    """Editing catalog.py restarts Catalog alone; no call fails; the new code serves in < 2 s."""
    run = reloading
    before = _pids(run)
    catalog = shop / "shop" / "catalog.py"
    url = run.endpoint("Catalog")
    with Load(run) as load, run.client(timeout=10) as http:
        wait(lambda: min(load.ok.values(), default=0) >= 20, message="the load to get going")
        assert _price(http, url, "pear") == 75
        catalog.write_text(catalog.read_text().replace("price_cents=75", "price_cents=80"))
        edited = time.monotonic()
        streak_start, streak, noticed = 0.0, 0, 0.0
        while streak < 20:  # 20 answers in a row from the new code (both replicas)
            if time.monotonic() - edited > 15:
                pytest.fail(f"the new price was never served steadily\n{run.output}")
            if not noticed and "reload: restarting Catalog" in run.output:
                noticed = time.monotonic() - edited
            if _price(http, url, "pear") == 80:
                streak_start = streak_start if streak else time.monotonic()
                streak += 1
            else:
                streak = 0
        served_after = streak_start - edited
        wait(lambda: "reload: Catalog restarted" in run.output, message="the restart line")
        base = dict(load.ok)  # and the load goes on after the old replicas are gone
        wait(lambda: all(load.ok[s] >= base[s] + 20 for s in base), message="more calls")
        served = dict(load.ok)
    after = _pids(run)
    print(
        f"reload noticed {noticed:.2f}s and new behaviour served steadily {served_after:.2f}s "
        f"after the edit; calls during the test: {served}"
    )
    assert not load.failures, load.failures[:5]
    assert served_after < 2.0, f"took {served_after:.2f}s"
    assert after["Catalog"] != before["Catalog"] and not set(after["Catalog"]) & set(
        before["Catalog"]
    )
    assert {k: v for k, v in after.items() if k != "Catalog"} == {
        k: v for k, v in before.items() if k != "Catalog"
    }
    assert "reload: restarting Catalog\n" in run.output + "\n"


def test_a_syntax_error_keeps_the_old_replica_serving(reloading: LumiRun, shop: Path) -> None:
    """A file that does not compile gets one line; nothing restarts and calls still work."""
    run = reloading
    before = _pids(run)
    orders = shop / "shop" / "orders.py"
    orders.write_text(orders.read_text().replace("async def get(", "async def get((", 1))
    run.wait_output("reload: ")
    line = wait(
        lambda: next((ln for ln in run.lines if "orders.py:" in ln and "reload:" in ln), None),
        message="the syntax error line",
    )
    assert "(the old code keeps serving)" in line
    assert [ln for ln in run.lines if "reload:" in ln and "watching" not in ln] == [line]
    resp = run.post("Orders", "get", {"order_id": "x"})
    assert resp.json()["code"] == "NOT_FOUND"
    assert _pids(run) == before


def test_an_interface_break_is_reported_with_the_api_diff_verdict(
    reloading: LumiRun, shop: Path
) -> None:
    """Renaming a parameter that Inventory sends restarts Catalog and prints the wire break."""
    run = reloading
    catalog = shop / "shop" / "catalog.py"
    text = catalog.read_text()
    assert "def product(self, sku: Sku)" in text
    text = text.replace("def product(self, sku: Sku)", "def product(self, code: Sku)")
    catalog.write_text(
        text.replace("PRODUCTS[sku]", "PRODUCTS[code]").replace("{sku!r}", "{code!r}")
    )
    run.wait_output("lumi api diff verdict", timeout=30)
    assert "reload: Catalog changed its interface in" in run.output
    assert "used by Inventory" in run.output
    assert "✗ wire" in run.output and "Catalog.product" in run.output
    resp = run.post("Catalog", "product", {"code": "pear"})
    assert resp.status_code == 200 and resp.json()["price_cents"] == 75


def test_a_replica_that_cannot_start_leaves_the_old_one_serving(
    reloading: LumiRun, shop: Path
) -> None:
    """Code that compiles but fails at import: one reload line names it; the old Mailer serves."""
    run = reloading
    before = _pids(run)
    mailer = shop / "shop" / "mailer.py"
    mailer.write_text(mailer.read_text() + '\nraise RuntimeError("boom at import")\n')
    line = wait(
        lambda: next((ln for ln in run.lines if "reload: Mailer could not start" in ln), None),
        message="the failed-start line",
    )
    assert "boom at import" in line and line.endswith("(the old replica keeps serving)")
    assert run.post("Mailer", "sent", {}).status_code == 200
    assert _pids(run) == before
    assert run.registry()["services"]["Mailer"]["replicas"][0]["state"] == "ready"
