"""The dashboard's data sources on their own: metrics, live fan-out, logs, traces, the server."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import httpx
import pytest
from opentelemetry.trace import SpanKind

from lumi.config import load_config
from lumi.dashboard import Dashboard
from lumi.dashboard.hub import Hub
from lumi.dashboard.logview import LogFollower, history, matcher
from lumi.dashboard.metricsview import parse
from lumi.dashboard.traces import detail, recent
from lumi.runtime_services.observability.metrics import Metrics
from lumi.runtime_services.observability.spanstore import SqliteSpanExporter
from lumi.runtime_services.observability.tracing import Tracing
from tests.conftest import SHOP


def test_metrics_are_summed_per_method_with_percentiles() -> None:
    """Histograms from /metrics become per-method counts, errors and bucket-interpolated
    percentiles (the way Prometheus's histogram_quantile reads them)."""
    metrics = Metrics()
    for _ in range(90):
        metrics.request("Orders", "place", "OK", 0.004)  # in the (0.0025, 0.005] bucket
    for _ in range(10):
        metrics.request("Orders", "place", "NOT_FOUND", 0.2)  # in (0.1, 0.25]
    metrics.request("Catalog", "product", "OK", 0.0004)
    found = parse(metrics.render().decode())
    place = found[("Orders", "place")]
    assert (place.count, place.errors) == (100, 10)
    p50, p95 = place.quantile(0.5), place.quantile(0.95)
    assert p50 is not None and 0.0025 < p50 <= 0.005
    assert p95 is not None and 0.1 < p95 <= 0.25
    assert found[("Catalog", "product")].count == 1
    assert found[("Catalog", "product")].quantile(0.99) == pytest.approx(0.0005 * 0.99)


async def test_hub_streams_are_bounded_and_closable() -> None:
    """A subscriber that does not read keeps only the newest messages; close() ends streams."""
    hub = Hub(maxsize=3)
    async with hub.subscribe() as queue:
        for i in range(5):
            hub.publish("n", i)
        assert [queue.get_nowait() for _ in range(3)] == [("n", 2), ("n", 3), ("n", 4)]
        hub.close()
        assert await asyncio.wait_for(queue.get(), 1) is None
    assert hub.listeners == 0


def _write_logs(folder: Path) -> None:
    folder.mkdir(parents=True)
    records = {
        "Orders.log": [
            {"ts": "2026-01-01T00:00:01Z", "level": "info", "service": "Orders", "msg": "a",
             "correlation_id": "c1"},
            {"ts": "2026-01-01T00:00:03Z", "level": "warning", "service": "Orders", "msg": "c"},
        ],
        "Mailer.log": [
            {"ts": "2026-01-01T00:00:02Z", "level": "debug", "service": "Mailer", "msg": "b",
             "correlation_id": "c1"},
        ],
    }  # fmt: skip
    for name, lines in records.items():
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in lines) + "not json\n")


def test_log_history_is_merged_and_filtered(tmp_path: Path) -> None:
    """Every file is merged by time; service, level, correlation and text filters apply."""
    _write_logs(tmp_path / ".lumi" / "logs")
    assert [r["msg"] for r in history(tmp_path, matcher([], None, None))] == ["a", "b", "c"]
    assert [r["msg"] for r in history(tmp_path, matcher([], "info", None))] == ["a", "c"]
    assert [r["msg"] for r in history(tmp_path, matcher([], None, "c1"))] == ["a", "b"]
    assert [r["msg"] for r in history(tmp_path, matcher(["Mailer"], None, None))] == ["b"]
    assert [r["msg"] for r in history(tmp_path, matcher([], None, None, "C"))] == ["c"]
    assert [r["msg"] for r in history(tmp_path, matcher([], None, None), limit=1)] == ["c"]


async def test_log_follower_reads_only_complete_new_lines(tmp_path: Path) -> None:
    """Lines already there are skipped; a line still being written waits for its newline."""
    folder = tmp_path / ".lumi" / "logs"
    _write_logs(folder)
    follower = LogFollower(tmp_path, Hub())
    await follower.start()
    try:
        with (folder / "Orders.log").open("a") as log:
            log.write('{"ts": "2026-01-01T00:00:09Z", "msg": "new"}\n{"ts": "2026-01-01T00:0')
        assert [r["msg"] for r in follower.read_new()] == ["new"]
        with (folder / "Orders.log").open("a") as log:
            log.write('0:10Z", "msg": "rest"}\n')
        assert [r["msg"] for r in follower.read_new()] == ["rest"]
        assert follower.read_new() == []
    finally:
        await follower.aclose()


def test_traces_are_listed_and_drawn_from_the_span_store(tmp_path: Path) -> None:
    """A trace of two services is summarised (root, services, errors) and found again by its
    correlation id with its spans in tree order."""
    store = tmp_path / "traces.db"
    exporter = SqliteSpanExporter(store)
    tracing = Tracing([exporter], batch=False)
    root = tracing.start("Orders/place", SpanKind.SERVER, None,
                         {"lumi.service": "Orders", "lumi.correlation_id": "corr-1"})  # fmt: skip
    assert root is not None
    child = tracing.start("Inventory/reserve", SpanKind.SERVER,
                          (root.trace_id, root.span_id, True),
                          {"lumi.service": "Inventory", "lumi.correlation_id": "corr-1"})  # fmt: skip
    assert child is not None
    tracing.end(child, "FAILED_PRECONDITION")
    tracing.end(root, "OK")
    tracing.shutdown()
    [summary] = recent(store)
    assert summary["root"] == "Orders/place" and summary["services"] == ["Inventory", "Orders"]
    assert summary["errors"] == 1 and summary["correlation_id"] == "corr-1"
    assert recent(store, query="corr-1") == [summary]
    assert recent(store, query="nothing-like-it") == []
    found = detail(store, "corr-1")
    assert found is not None
    assert [(s["name"], s["depth"]) for s in found["spans"]] == [
        ("Orders/place", 0),
        ("Inventory/reserve", 1),
    ]
    assert detail(store, "0" * 32) is None


async def test_dashboard_of_an_app_that_is_not_running(tmp_path: Path) -> None:
    """Without a running app the dashboard still answers (running: false, with the reason),
    refuses requests without its token, and serves its page and assets."""
    app = tmp_path / "shop"
    shutil.copytree(SHOP, app, ignore=shutil.ignore_patterns(".lumi", "__pycache__"))
    board = Dashboard(load_config(app), port=0)
    await board.start()
    try:
        assert board.url.startswith("http://127.0.0.1:") and "?token=" in board.url
        async with httpx.AsyncClient(base_url=board.address) as http:
            assert (await http.get("/api/app")).status_code == 401
            info = (await http.get("/api/app", headers={"X-Lumi-Token": board.token})).json()
            assert info["running"] is False and "is not running" in info["problem"]
            assert [s["name"] for s in info["services"]] == [
                "Catalog",
                "Inventory",
                "Orders",
                "Mailer",
            ]
            page = await http.get("/")
            assert page.status_code == 200 and "/static/app.js" in page.text
            assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
            script = await http.get("/static/app.js")
            assert script.headers["content-type"].startswith("text/javascript")
            assert (await http.get("/static/..%2Fserver.py")).status_code == 404
            call = await http.post(
                "/api/call",
                headers={"X-Lumi-Token": board.token},
                json={"service": "Orders", "method": "get", "arguments": {"order_id": "x"}},
            )
            assert call.json()["error"]["code"] == "UNAVAILABLE"
            await _bad_requests(http, board.token)
    finally:
        await board.aclose()


async def _bad_requests(http: httpx.AsyncClient, token: str) -> None:
    """Bad input to the API: a clear JSON error each, never a crash."""
    auth = {"X-Lumi-Token": token, "Content-Type": "application/json"}
    cases = [
        ("/api/call", b"{nope", 400, "not JSON"),
        ("/api/call", b"[1, 2]", 400, "JSON object"),
        ("/api/call", b'{"service": "Ordrs", "method": "get"}', 404, "services: Catalog"),
        ("/api/call", b'{"service": "Orders", "method": "get", "arguments": 3}', 400,
         "arguments must be a JSON object"),
        ("/api/deadletters/replay", b'{"topic": "No.such"}', 404, "no topic"),
        ("/api/deadletters/replay", b'{"topic": "Orders.placed", "ids": [1]}', 400, "ids"),
    ]  # fmt: skip
    for path, body, status, text in cases:
        resp = await http.post(path, content=body, headers=auth)
        assert resp.status_code == status, (path, body, resp.text)
        assert text in resp.json()["error"], resp.text
    plain = await http.post("/api/call", content=b"{}", headers={"X-Lumi-Token": token})
    assert plain.status_code == 415
    big = await http.post("/api/call", content=b" " * (2 << 20), headers=auth)
    assert big.status_code == 413
