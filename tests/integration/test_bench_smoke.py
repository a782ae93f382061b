"""The benchmarks run (briefly) and report every figure, so they cannot rot unnoticed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def run_bench(*args: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, *args, "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_inproc_overhead_bench_reports_per_call_cost() -> None:
    """bench/inproc_overhead.py measures a direct call and a Lumi call."""
    result = run_bench("bench/inproc_overhead.py", "--calls", "2000", "--repeats", "1")
    assert 0 < result["direct_us"] < result["lumi_us"]  # type: ignore[operator]


def test_http_bench_reports_all_contestants() -> None:
    """bench/http_bench.py drives Lumi, FastAPI and a bare ASGI app with wrk, without errors."""
    result = run_bench(
        "bench/http_bench.py",
        "--duration",
        "1",
        "--warmup",
        "1",
        "--rounds",
        "1",
        "--connections",
        "8",
    )
    results = result["results"]
    assert set(results) == {"lumi", "fastapi", "bare_asgi"}  # type: ignore[arg-type]
    for figures in results.values():  # type: ignore[attr-defined]
        assert figures["rps"] > 0 and figures["errors"] == 0 and figures["p99_ms"] > 0


def test_events_bench_reports_both_brokers() -> None:
    """bench/events_bench.py reports throughput and latency for the memory and embedded brokers."""
    result = run_bench(
        "bench/events_bench.py", "--events", "1000", "--rate", "200", "--seconds", "1"
    )
    for broker in ("memory", "embedded"):
        figures = result[broker]  # type: ignore[index]
        assert all(rate > 0 for rate in figures["publish_per_s"].values())
        assert figures["e2e_same_process"]["received"] == 200
    assert result["embedded"]["e2e_other_process"]["received"] == 200  # type: ignore[index]


def test_pipeline_bench_reports_inproc_and_http_cost() -> None:
    """bench/pipeline_bench.py measures the runtime services in-process and over HTTP."""
    result = run_bench(
        "bench/pipeline_bench.py",
        "--calls", "300", "--repeats", "1", "--duration", "1", "--rounds", "1",
        "--connections", "8",
    )  # fmt: skip
    inproc = result["inproc"]
    http = result["http"]
    assert inproc["bare_us"] > 0 and inproc["full_us"] > 0  # type: ignore[index]
    assert http["bare_rps"] > 0 and http["full_rps"] > 0  # type: ignore[index]
    assert http["bare_errors"] == 0 and http["full_errors"] == 0  # type: ignore[index]


def test_packaging_bench_reports_build_and_transfer_figures() -> None:
    """bench/packaging_bench.py builds the shop and moves an artifact through a real registry
    with Lumi and with oras."""
    result = run_bench("bench/packaging_bench.py", "--rounds", "1", "--mib", "1")
    for key in ("lumi_build_s", "python_m_build_wheel_s", "lumi_push_mib_s", "oras_push_mib_s",
                "lumi_pull_mib_s", "oras_pull_mib_s"):  # fmt: skip
        assert result[key] > 0, key  # type: ignore[operator]


def test_reload_bench_reports_lumi_and_uvicorn() -> None:
    """bench/reload_bench.py times an edit until the new code serves, for both contestants."""
    result = run_bench("bench/reload_bench.py", "--rounds", "1")
    assert result["lumi_ms"] > 0 and result["uvicorn_ms"] > 0  # type: ignore[operator]


def test_cli_bench_reports_lumi_against_python_and_peer_clis() -> None:
    """bench/cli_bench.py times lumi's start-ups, python -c pass, fastapi and uvicorn --help."""
    result = run_bench("bench/cli_bench.py", "--rounds", "1")
    results = result["results"]
    assert set(results) == {  # type: ignore[arg-type]
        "python -c pass", "lumi --help", "lumi call --help", "lumi ls", "lumi call",
        "fastapi --help", "uvicorn --help",
    }  # fmt: skip
    for figures in results.values():  # type: ignore[attr-defined]
        assert figures["wall_ms"] > 0 and figures["rss_mib"] > 0
    assert set(result["lumi_help_vs"]) == {"fastapi --help", "uvicorn --help"}  # type: ignore[arg-type]
