"""The dashboard in a real browser, against a real ``lumi run examples/shop``.

Each test saves screenshots of what it looked at under ``tmp/artifacts/dashboard`` (the path is
printed), so a person can check that the views look right.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import statistics
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lumi.brokers.embedded import EmbeddedBroker
from lumi.model.context import new_id
from lumi.model.envelope import Envelope, now_rfc3339
from tests.conftest import SHOP
from tests.integration.browser import NODES_LAID_OUT, artifacts, chromium
from tests.integration.harness import LumiRun, alive, copy_app, wait

pytestmark = pytest.mark.slow


class Shop:
    """The running shop, its dashboard URL and token."""

    def __init__(self, run: LumiRun) -> None:
        self.run = run
        match = re.search(r"dashboard: (http://127\.0\.0\.1:(\d+))/\?token=(\S+)", run.output)
        assert match, run.output
        self.base, self.port, self.token = match.group(1), int(match.group(2)), match.group(3)
        self.url = f"{self.base}/?token={self.token}"

    def view(self, name: str) -> str:
        return f"{self.url}#/{name}"

    def place(self, customer: str, correlation: str | None = None, qty: int = 1) -> Any:
        headers = {"x-correlation-id": correlation} if correlation else {}
        body = {"customer": customer, "lines": [{"sku": "apple", "qty": qty}]}
        resp = self.run.post("Orders", "place", body, headers=headers)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def metric(self, service: str, name: str, **labels: str) -> float:
        text = self.run.http.get(f"{self.run.endpoint(service)}/metrics").text
        total = 0.0  # summed over the label sets that match
        for line in text.splitlines():
            if line.startswith(f"{name}{{") and all(
                f'{k}="{v}"' in line for k, v in labels.items()
            ):
                total += float(line.rsplit(" ", 1)[1])
        return total


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    """``lumi run`` of a private copy of the example shop, with its dashboard on a free port."""
    app = copy_app(SHOP, tmp_path_factory.mktemp("dash") / "shop")
    run = LumiRun(app, "--dashboard-port", "0")
    try:
        run.wait_ready()
        run.wait_output("dashboard: http")
        yield Shop(run)
    finally:
        pids = run.pids()
        run.stop()
        wait(lambda: not any(alive(p) for p in pids), timeout=30, message="no orphans")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module."""
    with chromium() as found:
        yield found


@pytest.fixture(scope="module")
def shots() -> Path:
    """Where this module's screenshots go."""
    return artifacts("dashboard")


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page; any uncaught script error fails the test."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    assert not errors, errors


def test_graph_shows_every_service_with_live_replica_state(
    shop: Shop, page: Any, shots: Path
) -> None:
    """Every service is a node with its replicas' state; a killed replica is seen restarting
    and ready again without reloading the page; the graph paints in under a second."""
    paints = []
    for _ in range(5):
        page.goto("about:blank")  # a real load each time, not a same-document navigation
        page.goto(shop.view("graph"))
        page.wait_for_selector("svg.graph .node")
        paints.append(
            page.wait_for_function(
                "() => performance.getEntriesByName('lumi-graph-painted')[0]?.startTime"
            ).json_value()
        )
    median = statistics.median(paints)
    print(f"graph first paint: median {median:.0f} ms, max {max(paints):.0f} ms over {paints}")
    assert median < 1000, paints
    registry = shop.run.registry()["services"]
    names = page.eval_on_selector_all("svg.graph .node", "ns => ns.map(n => n.dataset.service)")
    assert sorted(names) == sorted(registry)
    states = page.eval_on_selector_all(
        "svg.graph .node circle.rep", "cs => cs.map(c => c.dataset.state)"
    )
    assert states == ["ready"] * sum(len(s["replicas"]) for s in registry.values())
    assert page.locator("svg.graph text.edge-label", has_text="Orders.placed").count() == 1
    assert page.evaluate(NODES_LAID_OUT)
    page.screenshot(path=shots / "graph.png", full_page=True)

    page.click("svg.graph .node[data-service=Orders]")
    page.wait_for_selector("section.panel h2:has-text('Orders')")
    page.screenshot(path=shots / "graph-orders.png", full_page=True)

    mailer = registry["Mailer"]["replicas"][0]["pid"]
    circle = "svg.graph .node[data-service=Mailer] circle.rep"
    os.kill(mailer, signal.SIGKILL)
    page.wait_for_selector(f"{circle}[data-state=restarting]", timeout=10_000)
    page.screenshot(path=shots / "graph-restarting.png", full_page=True)
    page.wait_for_selector(f"{circle}[data-state=ready]", timeout=20_000)
    shop.run.wait_ready()
    assert shop.run.registry()["services"]["Mailer"]["replicas"][0]["pid"] != mailer


def _fill_order(page: Any, customer: str, qty: str) -> None:
    page.fill("[data-field=customer] input", customer)
    if page.locator("[data-field=lines] input[name=sku]").count() == 0:
        page.click("text=+ add OrderLine")
    page.fill("[data-field=lines] input[name=sku]", "apple")
    page.fill("[data-field=lines] input[name=qty]", qty)


def test_explorer_calls_a_method_and_shows_its_result_and_trace(
    shop: Shop, page: Any, shots: Path
) -> None:
    """The form of Orders.place (a list of nested models) sends a real call; the result and
    the call's trace across Orders, Inventory and Catalog appear."""
    page.goto(shop.view("explorer/Orders/place"))
    page.wait_for_selector("form.form[data-method='Orders.place']")
    assert "Reserve every line" in page.inner_text("p.doc")
    _fill_order(page, "explorer-ann", "2")
    page.click("#call")
    result = json.loads(page.wait_for_selector("#result").inner_text())
    assert result["customer"] == "explorer-ann"
    assert result["lines"] == [{"sku": "apple", "qty": 2}] and result["total_cents"] == 100
    page.wait_for_function(
        """() => {
            const rows = [...document.querySelectorAll('#call-trace .wf .row[data-span]')];
            const services = new Set(rows.map(r => r.dataset.service));
            return ['dashboard', 'Orders', 'Inventory', 'Catalog', 'Mailer'].every(s => services.has(s));
        }""",
        timeout=15_000,
    )
    names = page.eval_on_selector_all(
        "#call-trace .wf .row .name", "ns => ns.map(n => n.textContent)"
    )
    assert any("Inventory/reserve" in n for n in names) and any(
        "publish Orders.placed" in n for n in names
    )
    page.screenshot(path=shots / "explorer-result-and-trace.png", full_page=True)


def test_explorer_names_a_validation_error(shop: Shop, page: Any, shots: Path) -> None:
    """A quantity of 0 and a missing customer come back as INVALID_ARGUMENT naming each field."""
    page.goto(shop.view("explorer/Orders/place"))
    page.wait_for_selector("form.form")
    _fill_order(page, "", "0")
    page.click("#call")
    error = page.wait_for_selector(".result.bad[data-code=INVALID_ARGUMENT]")
    text = error.inner_text()
    assert "lines.0.qty" in text and "greater than 0" in text, text
    assert "customer" in text and "Field required" in text, text
    page.wait_for_selector("#call-trace .wf .row[data-service=Orders]", timeout=15_000)
    page.screenshot(path=shots / "explorer-validation-error.png", full_page=True)


def test_a_published_event_appears_in_the_live_tail(shop: Shop, page: Any, shots: Path) -> None:
    """An order placed while the events view is open shows up in Orders.placed's tail."""
    page.goto(shop.view("events/Orders.placed"))
    page.wait_for_selector("#topics tr[data-topic='Orders.placed']")
    page.wait_for_selector("#tail .evt, #tail-empty")
    page.wait_for_timeout(300)  # the stream is open once the view rendered; give it a beat
    customer = f"tail-{uuid.uuid4().hex[:6]}"
    order = shop.place(customer)
    card = page.wait_for_selector(f"#tail .evt pre:has-text('{customer}')", timeout=10_000)
    assert json.loads(card.inner_text())["order_id"] == order["id"]
    page.screenshot(path=shots / "events-live-tail.png", full_page=True)


def _publish_bad_event(app_dir: Path) -> str:
    """Put an Orders.placed event Mailer cannot accept (no customer) on the app's log."""
    envelope = Envelope(
        id=new_id(),
        source="/lumi/shop/test",
        type="Orders.placed",
        data=json.dumps({"order_id": "bad-1", "total_cents": 5}).encode(),
        time=now_rfc3339(),
    )

    async def publish() -> None:
        async with EmbeddedBroker(app_dir / ".lumi" / "events.db") as broker:
            await broker.publish("Orders.placed", [envelope])

    thread = threading.Thread(target=asyncio.run, args=(publish(),))  # no loop of Playwright's
    thread.start()
    thread.join(timeout=30)
    return envelope.id


def test_a_dead_letter_is_listed_with_its_reason_and_replayed(
    shop: Shop, page: Any, shots: Path
) -> None:
    """A payload Mailer rejects is a dead letter with the reason; Replay sends it back to
    Mailer (which handles it again: here it fails again and is dead-lettered once more)."""
    dead = lambda: shop.metric("Mailer", "lumi_events_dead_lettered_total", group="Mailer")  # noqa: E731
    before = dead()
    event_id = _publish_bad_event(shop.run.app_dir)
    wait(lambda: dead() == before + 1, message="Mailer to dead-letter the event")
    page.goto(shop.view("events/Orders.placed"))
    row = page.wait_for_selector(f"#dead-letters tr[data-id='{event_id}']")
    reason = row.query_selector(".reason").inner_text()
    assert "customer" in reason and "Field required" in reason, reason
    page.screenshot(path=shots / "events-dead-letter.png", full_page=True)
    row.query_selector("button.replay").click()
    page.wait_for_selector(".toast:has-text('replayed 1 event to Mailer')")
    wait(lambda: dead() == before + 2, message="the replayed event to reach Mailer again")
    page.wait_for_selector(f"#dead-letters tr[data-id='{event_id}']", timeout=10_000)
    assert page.locator(f"#dead-letters tr[data-id='{event_id}']").count() == 1
    page.screenshot(path=shots / "events-after-replay.png", full_page=True)


def test_logs_filter_by_correlation_id_live(shop: Shop, page: Any, shots: Path) -> None:
    """With a correlation id typed in, only that request's lines show, new ones arrive live."""
    mine, other = new_id(), new_id()
    first = shop.place("logs-mine", mine)
    shop.place("logs-other", other)
    page.goto(shop.view("logs"))
    page.wait_for_selector("#log-lines .log")
    page.fill("#log-correlation", mine)
    page.wait_for_function(
        f"""() => {{
            const rows = [...document.querySelectorAll('#log-lines .log')];
            return rows.length > 0 && rows.every(r => r.dataset.correlation === '{mine}');
        }}"""
    )
    assert first["id"] in page.inner_text("#log-lines")
    second = shop.place("logs-mine", mine)
    page.wait_for_selector(f"#log-lines .log:has-text('{second['id']}')", timeout=10_000)
    correlations = page.eval_on_selector_all(
        "#log-lines .log", "rs => [...new Set(rs.map(r => r.dataset.correlation))]"
    )
    assert correlations == [mine]
    page.screenshot(path=shots / "logs-by-correlation.png", full_page=True)
    page.fill("#log-correlation", "")
    page.select_option("#log-level", "debug")
    page.wait_for_selector(f"#log-lines .log[data-correlation='{other}']")
    page.screenshot(path=shots / "logs-all.png", full_page=True)


def test_traces_search_by_correlation_and_waterfall(shop: Shop, page: Any, shots: Path) -> None:
    """Searching a correlation id finds its request; opening it draws the waterfall."""
    correlation = new_id()
    shop.place("traced", correlation)
    page.goto(shop.view("traces"))
    page.wait_for_selector("#trace-list")
    page.fill("#trace-search", correlation)
    row = f"#trace-list tr[data-correlation='{correlation}']"
    page.wait_for_selector(row)
    # The unfiltered list (the new request is on it too) may still be shown: wait for the
    # search to narrow it, then check it kept exactly the one request.
    # (a function, not an expression string: the page's CSP forbids the eval that a string
    # expression needs once Playwright polls it)
    page.wait_for_function(
        "() => document.querySelectorAll('#trace-list tbody tr').length === 1", timeout=10_000
    )
    assert page.locator("#trace-list tbody tr").count() == 1
    assert page.locator(row).count() == 1
    page.screenshot(path=shots / "traces-search.png", full_page=True)
    page.locator(row).click()
    page.wait_for_selector(".wf .row[data-service=Catalog]")
    page.screenshot(path=shots / "traces-waterfall.png", full_page=True)


def test_metrics_per_method(shop: Shop, page: Any, shots: Path) -> None:
    """The metrics view lists each called method with its calls and percentiles."""
    shop.place("metrics")
    page.goto(shop.view("metrics"))
    row = page.wait_for_selector("#metrics-table tr[data-method='Orders.place']", timeout=10_000)
    cells = row.inner_text()
    assert "ms" in cells
    page.screenshot(path=shots / "metrics.png", full_page=True)


def test_the_api_refuses_requests_without_the_token(shop: Shop) -> None:
    """No token or a wrong one: 401 and no call made; a foreign Host header: 403; the
    dashboard listens on 127.0.0.1 only."""
    before = shop.metric("Orders", "lumi_requests_total", method="place", code="OK")
    body = {"service": "Orders", "method": "place",
            "arguments": {"customer": "x", "lines": [{"sku": "apple", "qty": 1}]}}  # fmt: skip
    with httpx.Client(base_url=shop.base, timeout=10) as http:
        assert http.get("/api/app").status_code == 401
        assert http.get("/api/app", headers={"X-Lumi-Token": "nope"}).status_code == 401
        refused = http.post("/api/call", json=body)
        assert refused.status_code == 401 and "token" in refused.json()["error"]
        assert http.post("/api/call", json=body, params={"token": "x"}).status_code == 401
        replay = {"topic": "Orders.placed", "group": "Mailer"}
        assert http.post("/api/deadletters/replay", json=replay).status_code == 401
        assert http.get("/api/live/logs").status_code == 401
        good = {"X-Lumi-Token": shop.token}
        foreign = http.get("/api/app", headers={**good, "Host": "evil.example:80"})
        assert foreign.status_code == 403
        cross = http.post("/api/call", json=body, headers={**good, "Origin": "http://evil.example"})
        assert cross.status_code == 403
        assert http.get("/api/app", headers=good).status_code == 200
    assert shop.metric("Orders", "lumi_requests_total", method="place", code="OK") == before
    listening = {
        line.split()[1]
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
        if line.split()[3] == "0A"
    }
    assert f"0100007F:{shop.port:04X}" in listening
    assert f"00000000:{shop.port:04X}" not in listening
