"""A newcomer's mistakes against the running example shop: each is one line and an exit code,
never a silent success or a wait forever; ids printed by the CLI paste back into it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.harness import LumiRun, wait
from tests.integration.running_shop import RunningShop, copy_examples

pytestmark = pytest.mark.slow


def one_line_error(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """The single stderr line of a failed command (asserting there is exactly one)."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def place(shop: RunningShop, correlation: str, qty: int = 1) -> None:
    """Place an order with a chosen correlation id (over HTTP, like any client)."""
    body = {"customer": "ada", "lines": [{"sku": "pear", "qty": qty}]}
    resp = shop.run.post("Orders", "place", body, headers={"x-correlation-id": correlation})
    assert resp.status_code == 200, resp.text


def test_a_negative_quantity_is_refused_and_stock_is_unchanged(running_shop: RunningShop) -> None:
    """The shop's types refuse qty=-5 (INVALID_ARGUMENT, exit 1) before the method runs."""
    before = running_shop.lumi("call", "Inventory.available", "sku=melon", "--app", "examples/shop")
    assert before.returncode == 0, before.stderr
    refused = running_shop.lumi(
        "call", "Inventory.reserve", "sku=melon", "qty=-5", "--app", "examples/shop"
    )
    line = one_line_error(refused)
    assert line.startswith("error: INVALID_ARGUMENT:") and "qty" in line, line
    after = running_shop.lumi("call", "Inventory.available", "sku=melon", "--app", "examples/shop")
    assert json.loads(after.stdout) == json.loads(before.stdout)
    empty = running_shop.lumi(
        "call", "Orders.place", "customer=ada", "--json", '{"lines": []}', "--app", "examples/shop"
    )
    assert one_line_error(empty).startswith("error: INVALID_ARGUMENT:")


def test_events_tail_on_a_misspelt_topic_says_so(running_shop: RunningShop) -> None:
    """A misspelt event or service gets a did-you-mean at once instead of tailing forever."""
    event = running_shop.lumi("events", "tail", "Orders.placd", "--app", "examples/shop")
    assert "did you mean 'Orders.placed'?" in one_line_error(event)
    service = running_shop.lumi("events", "tail", "Ordrs.placed", "--app", "examples/shop")
    line = one_line_error(service)
    assert "did you mean 'Orders.placed'?" in line and "--any-topic" in line


def test_logs_of_an_unknown_correlation_id_fail_and_a_prefix_finds_one(
    running_shop: RunningShop,
) -> None:
    """An id no line carries is exit 1 with one line; a unique prefix (as the docs write ids,
    ``5f0c…``) shows that request's lines and no other."""
    unknown = running_shop.lumi("logs", "--correlation", "no-such-id", "--app", "examples/shop")
    assert "no log line has correlation id 'no-such-id'" in one_line_error(unknown)
    correlation = f"newcomer-{uuid.uuid4().hex}"
    place(running_shop, correlation)
    logs_dir = running_shop.app / ".lumi" / "logs"
    wait(
        lambda: correlation in (logs_dir / "Mailer.log").read_text(),
        timeout=30,
        message="the Mailer logged the order",
    )
    shown = running_shop.lumi(
        "logs", "--json", "--correlation", correlation[:20] + "…", "--app", "examples/shop"
    )
    assert shown.returncode == 0, shown.stderr
    records = [json.loads(line) for line in shown.stdout.splitlines()]
    assert {r["correlation_id"] for r in records} == {correlation}
    assert "Mailer" in {r["service"] for r in records}


def test_trace_ids_printed_by_the_list_paste_back(running_shop: RunningShop) -> None:
    """Every id ``lumi trace`` lists, and a short prefix of a trace id, opens that trace;
    an ambiguous prefix says how many ids it starts."""
    for index in range(2):
        place(running_shop, f"newcomer-trace-{index}-{uuid.uuid4().hex}")

    def listed() -> list[list[str]]:
        out = running_shop.lumi("trace", "--app", "examples/shop").stdout
        rows = [line.split() for line in out.splitlines()[1:]]
        return [r for r in rows if len(r) >= 2 and r[1].startswith("newcomer-trace-")]

    rows = wait(lambda: len(listed()) >= 2 and listed(), timeout=30, message="two listed traces")
    for trace_id, correlation_id, *_ in rows:
        assert "…" not in trace_id + correlation_id
        for ident in (trace_id, correlation_id, trace_id[:6]):
            shown = running_shop.lumi("trace", ident, "--app", "examples/shop")
            assert shown.returncode == 0, shown.stderr
            assert re.search(rf"trace {trace_id}[0-9a-f]*\s", shown.stdout), shown.stdout
    ambiguous = running_shop.lumi("trace", "newcomer-trace-", "--app", "examples/shop")
    assert "give more of it" in one_line_error(ambiguous)
    unknown = running_shop.lumi("trace", "f" * 31 + "e", "--app", "examples/shop")
    assert "no trace or correlation id" in one_line_error(unknown)


def test_inproc_writes_each_replicas_own_log_file(
    lumi_run: Callable[..., LumiRun], tmp_path: Path
) -> None:
    """``lumi run --inproc`` logs each replica to ``<service>[-n].log`` as separate processes
    would, so ``lumi logs -s`` knows the services and not the app's name."""
    app = copy_examples(tmp_path) / "examples" / "shop"
    run = lumi_run(app, "--inproc", "--no-dashboard")
    run.wait_ready()
    correlation = f"inproc-{uuid.uuid4().hex}"
    body = {"customer": "ada", "lines": [{"sku": "apple", "qty": 1}]}
    resp = run.post("Orders", "place", body, headers={"x-correlation-id": correlation})
    assert resp.status_code == 200, resp.text
    logs = app / ".lumi" / "logs"
    wait(
        lambda: (
            (logs / "Mailer.log").is_file() and correlation in (logs / "Mailer.log").read_text()
        ),
        timeout=30,
        message="the Mailer's own log file has the order",
    )
    files = sorted(p.name for p in logs.glob("*.log"))
    assert files == ["Catalog-1.log", "Catalog.log", "Inventory.log", "Mailer.log", "Orders.log"]
    for path in logs.glob("*.log"):
        records = [json.loads(line) for line in path.read_text().splitlines()]
        service, _, index = path.stem.partition("-")
        assert records and {(r["service"], r.get("replica", 0)) for r in records} == {
            (service, int(index or 0))
        }, path
    cli = subprocess.run(
        [sys.executable, "-m", "lumi.cli.main", "logs", "-s", "shop", "--app", str(app)],
        capture_output=True, text=True, timeout=60, env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    assert "no service 'shop' in this app" in one_line_error(cli)


_MODULES_AFTER = """
import json, sys
sys.argv[0] = "lumi"
from lumi.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    assert not exc.code, exc.code
sys.stdout.flush()
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def _loaded(shop: RunningShop, *args: str) -> tuple[str, set[str]]:
    """What ``lumi ARGS`` prints, and the top-level packages it loaded."""
    out = subprocess.run([sys.executable, "-c", _MODULES_AFTER, *args], cwd=shop.workspace,
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "NO_COLOR": "1"})  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout, {m.split(".")[0] for m in json.loads(out.stderr.strip().splitlines()[-1])}


def test_an_http_call_loads_neither_asyncio_nor_pydantic(running_shop: RunningShop) -> None:
    """``lumi call`` to an app on HTTP (over mTLS, the default, as the operator) is one request
    made with the standard library (no asyncio, pydantic, transports or rich): the result is
    the one the full path prints."""
    printed, loaded = _loaded(
        running_shop, "call", "Catalog.product", "sku=apple", "--app", "examples/shop"
    )
    assert json.loads(printed) == {"sku": "apple", "name": "Apple", "price_cents": 50}
    assert not loaded & {"asyncio", "pydantic", "rich", "aiohttp", "httptools", "structlog"}
    assert not {m for m in loaded if m.startswith("lumi.transports")}


def test_lumi_ls_prints_without_rich(running_shop: RunningShop) -> None:
    """``lumi ls`` prints its listing without rich (which cost as much as reading the config)."""
    printed, loaded = _loaded(running_shop, "ls", "--app", "examples/shop")
    assert "  product(sku: str) -> Product (idempotent) [any service]" in printed.splitlines()
    assert "rich" not in loaded and "aiohttp" not in loaded


def test_lumi_ls_of_the_running_app_imports_neither_it_nor_pydantic(
    running_shop: RunningShop,
) -> None:
    """``lumi ls`` of the running shop is read from what its supervisor wrote (no config
    loading, no app code, no pydantic), and prints what loading them prints; once the config
    file changes, it loads them again."""
    quick, loaded = _loaded(running_shop, "ls", "--app", "examples/shop")
    assert not loaded & {"pydantic", "asyncio", "shop", "rich", "aiohttp"}, loaded
    assert "  replica 1 " in quick and "  on Orders.placed -> on_placed" in quick
    config = running_shop.app / "lumi.toml"
    was = config.stat()
    os.utime(config, ns=(was.st_atime_ns, was.st_mtime_ns + 1_000_000_000))
    try:
        full, loaded = _loaded(running_shop, "ls", "--app", "examples/shop")
    finally:
        os.utime(config, ns=(was.st_atime_ns, was.st_mtime_ns))
    assert {"pydantic", "shop"} <= loaded
    assert full == quick


def test_replicas_fork_from_the_template(running_shop: RunningShop) -> None:
    """Every replica of ``lumi run`` is a child of the template that imported Lumi once
    (``python -m lumi.runtimes.zygote``), not an interpreter started for it."""
    services = running_shop.run.registry()["services"]
    pids = [r["pid"] for s in services.values() for r in s["replicas"]]
    parents = {
        int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) for pid in pids
    }
    (template,) = parents
    assert "lumi.runtimes.zygote" in Path(f"/proc/{template}/cmdline").read_text()


def test_lumi_runs_output_lines_up_from_its_first_line(running_shop: RunningShop) -> None:
    """Every line's ``name |`` prefix has one width, the first replica's lines included (the
    width is made for every replica's name before any of them prints)."""
    lines = running_shop.run.lines
    banner = next(i for i, line in enumerate(lines) if "is running" in line)
    shown = [line for line in lines[: banner + 1] if " | " in line]
    assert any(line.startswith("Catalog[0]") for line in shown), shown
    assert len({line.index(" | ") for line in shown}) == 1, shown
