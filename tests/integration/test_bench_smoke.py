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
        [sys.executable, *args, "--json"], cwd=ROOT, capture_output=True, text=True, timeout=600
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


def test_kafka_consume_cost_bench_runs_the_member_without_a_broker() -> None:
    """bench/kafka_consume_cost.py feeds a Kafka member records, checks its commits, and
    reports the loop's CPU per event."""
    result = run_bench("bench/kafka_consume_cost.py", "2000")
    assert result["events"] == 2000 and result["cpu_us_per_event"] > 0  # type: ignore[operator]


def test_kafka_consume_loops_bench_times_both_loops_on_records_from_tansu() -> None:
    """bench/kafka_consume_loops.py fetches records from real tansu and reports the loop CPU
    per record of Lumi's member (its commits checked) and of the raw loop."""
    result = run_bench("bench/kafka_consume_loops.py", "2000", "--rounds", "1")
    assert result["lumi_us"] > 0 and result["raw_us"] > 0  # type: ignore[operator]


def test_kafka_consume_timeline_shows_the_thread_and_the_loop() -> None:
    """bench/kafka_consume_timeline.py (it wraps the consumer's internals, so it would rot
    first) consumes from real tansu and prints the thread's batches and the loop's hand-overs."""
    out = subprocess.run(
        [sys.executable, "bench/kafka_consume_timeline.py", "2000"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(" ms  thread took " in line for line in lines), out.stdout
    assert any(" ms  loop got " in line for line in lines), out.stdout
    assert lines[-1].endswith(" events/s") and float(lines[-1].split()[0].replace(",", "")) > 0


@pytest.mark.parametrize("broker", ["kafka", "nats"])
def test_broker_bench_reports_lumi_and_raw(broker: str) -> None:
    """bench/broker_bench.py starts the broker and reports every figure for Lumi and the raw
    client, with the ratios."""
    result = run_bench(
        "bench/broker_bench.py", "--broker", broker, "--events", "600", "--rate", "100",
        "--seconds", "1", "--rounds", "1",
    )  # fmt: skip
    medians = result["medians"]
    for side in ("lumi", "raw"):
        figures = medians[side]  # type: ignore[index]
        assert all(figures[k] > 0 for k in ("publish_concurrent", "publish_batched", "consume"))
        assert figures["e2e_p50_ms"] > 0 and figures["e2e_p99_ms"] >= figures["e2e_p50_ms"]
    assert set(result["lumi_over_raw"]) == {  # type: ignore[arg-type]
        "publish_concurrent", "publish_batched", "consume", "e2e_p50",
    }  # fmt: skip


def test_hop_bench_reports_one_hop_two_hops_and_the_peer() -> None:
    """bench/hop_bench.py drives Lumi's one- and two-hop paths and the bare aiohttp peer."""
    result = run_bench("bench/hop_bench.py", "--duration", "1", "--warmup", "1", "--rounds", "1")
    results = result["results"]
    assert set(results) == {"lumi_1hop", "lumi_2hop", "bare_1hop", "bare_2hop"}  # type: ignore[arg-type]
    for figures in results.values():  # type: ignore[attr-defined]
        assert figures["rps"] > 0 and figures["errors"] == 0 and figures["cpu_us"] > 0
        assert figures["p90_1c_ms"] > 0
    assert set(result["ratios"]) >= {"two_vs_one_hop", "lumi_vs_bare_2hop"}  # type: ignore[arg-type]


def test_function_bench_reports_cold_and_warm_latency() -> None:
    """bench/function_bench.py measures cold starts and warm calls of the function runtime
    and its peers."""
    result = run_bench("bench/function_bench.py", "--rounds", "1", "--calls", "20")
    for figures in (result["cold_start_ms"], result["warm_us_per_call"]):
        assert set(figures) == {"lumi_function", "lumi_process", "fastapi_uvicorn"}  # type: ignore[arg-type]
        assert all(value > 0 for value in figures.values())  # type: ignore[attr-defined]


def test_soak_bench_reports_good_calls_under_hostile_traffic() -> None:
    """bench/soak_bench.py runs quiet and hostile rounds, every hostile kind sends, and it
    reports the good calls' p99 and the replica's memory."""
    result = run_bench("bench/soak_bench.py", "--rounds", "1", "--seconds", "3")
    assert result["good_calls"] > 0 and result["good_errors"] == 0
    assert result["quiet_p99_ms"] > 0 and result["hostile_p99_ms"] > 0  # type: ignore[operator]
    sent = result["hostile_sent"]
    assert len(sent) == 12 and all(count > 0 for count in sent.values())  # type: ignore[union-attr, arg-type]
    assert result["rss_high_water_mb"] > 0  # type: ignore[operator]


def test_rollback_bench_reports_the_time_from_the_first_bad_signal() -> None:
    """bench/rollback_bench.py rolls a failing canary back and times it from its first error."""
    result = run_bench("bench/rollback_bench.py", "--rounds", "1")
    figures = result["figures"]
    assert set(figures) == {
        "detect_s",
        "traffic_off_s",
        "last_error_s",
        "stopped_s",
        "failed_calls",
    }  # type: ignore[arg-type]
    off = figures["traffic_off_s"]["median"]  # type: ignore[index]
    # detection may precede the first failed answer by the milliseconds the answer travels
    assert figures["detect_s"]["median"] <= off < figures["stopped_s"]["median"] < 30  # type: ignore[index]
    assert figures["failed_calls"]["median"] >= 1  # type: ignore[index]


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


def test_replica_bench_reports_start_memory_and_imports() -> None:
    """bench/replica_bench.py times the shop's start, measures idle replicas and imports."""
    result = run_bench("bench/replica_bench.py", "--rounds", "1")
    (row,) = result["results"].values()  # type: ignore[attr-defined]
    assert row["running_s"] > 0 and 0 < row["replica_uss_mib"] < row["replica_rss_mib"]
    assert row["template_rss_mib"] > 0  # the replicas fork from the template
    assert result["imports"]["this tree"]["lumi.runtimes.serve"][0] > 0  # type: ignore[index]
