"""bench/rpc_bench.py runs (briefly) and reports every contestant and codec figure."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def test_rpc_bench_reports_every_contestant() -> None:
    """Lumi gRPC/Thrift and the raw peers all answer calls; ratios and codec figures exist."""
    out = subprocess.run(
        [sys.executable, "bench/rpc_bench.py", "--duration", "0.5", "--rounds", "1",
         "--concurrency", "4", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    medians = result["medians"]
    assert set(medians) == {
        "lumi-grpc", "lumi-grpc-transport", "lumi-grpc-dispatch", "raw-grpc", "raw-grpc-tuned",
        "lumi-thrift", "raw-thrift", "raw-thrift-aio",
    }  # fmt: skip
    for figures in medians.values():
        assert (
            figures["rps"] > 0 and figures["p99_ms"] > 0 and figures["server_cpu_us_per_call"] > 0
        )
    assert len(result["ratios"]) == 6
    assert result["codec"]["lumi_json_to_proto_us"] > 0
