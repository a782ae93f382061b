"""HTTP benchmark: Lumi vs FastAPI+uvicorn vs a bare ASGI callable, side by side in one run.

Each contestant serves the same echo method (pydantic validation in, JSON out) in one worker
process on uvloop + httptools, pinned to CPU 0; ``wrk`` drives each in turn from CPU 1 with the
same connections and duration. Lumi runs for real: ``lumi run`` starts the replica process.

Run: ``python bench/http_bench.py [--duration 10] [--rounds 3] [--connections 64] [--json]``;
each figure is the median over the rounds.
Goals (issue 3): Lumi >= 2.5x FastAPI's throughput, >= 0.8x the bare ASGI callable, and a p99
no worse than FastAPI's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent / "http"
SERVER_CPU, LOAD_CPU = "0", "1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, body: bytes = b'{"text": "x", "n": 1}', timeout: float = 60.0) -> None:
    """Wait until POSTing ``body`` to ``url`` answers 200."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            request = urllib.request.Request(
                url, data=body, headers={"content-type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout}s")
        time.sleep(0.05)


def pinned(cpu: str) -> list[str]:
    return (
        ["taskset", "-c", cpu]
        if shutil.which("taskset") and os.cpu_count() and os.cpu_count() > 1
        else []
    )  # type: ignore[operator]


@contextlib.contextmanager
def uvicorn_server(
    target: str, *, cwd: Path = HERE, env: dict[str, str] | None = None
) -> Iterator[str]:
    """A uvicorn worker serving ``target`` (module:app, importable from ``cwd``), pinned to the
    server CPU; yields its echo URL once it answers."""
    port = free_port()
    cmd = [
        *pinned(SERVER_CPU), sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1",
        "--port", str(port), "--loop", "uvloop", "--http", "httptools", "--workers", "1",
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=cwd, env=None if env is None else {**os.environ, **env})
    try:
        url = f"http://127.0.0.1:{port}/Bench/echo"
        wait_http(url)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextlib.contextmanager
def lumi_server() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        app = Path(tmp) / "bench"
        shutil.copytree(HERE, app)
        env = {**os.environ, "NO_COLOR": "1", "LUMI_LOG_LEVEL": "WARNING"}
        cmd = [*pinned(SERVER_CPU), sys.executable, "-m", "lumi.cli.main", "run", str(app)]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
        try:
            registry = app / ".lumi" / "registry.json"
            deadline = time.monotonic() + 60
            while not registry.exists() or '"ready"' not in registry.read_text():
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("lumi run did not become ready")
                time.sleep(0.05)
            endpoint = json.loads(registry.read_text())["services"]["Bench"]["endpoints"][0]
            url = f"{endpoint}/Bench/echo"
            wait_http(url)
            yield url
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


def wrk(url: str, duration: int, connections: int) -> dict[str, float]:
    cmd = [
        *pinned(LOAD_CPU), "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency",
        "-s", str(HERE / "post.lua"), url,
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "90", "99"):
        match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if match:
            value, unit = float(match.group(1)), match.group(2)
            result[f"p{pct}_ms"] = (
                value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
            )
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["errors"] = float(errors.group(1)) if errors else 0.0
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="median of this many runs each")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    contestants = {
        "lumi": lumi_server,
        "fastapi": lambda: uvicorn_server("peers:fastapi_app"),
        "bare_asgi": lambda: uvicorn_server("peers:bare_app"),
    }
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in contestants}
    with contextlib.ExitStack() as stack:
        urls = {name: stack.enter_context(start()) for name, start in contestants.items()}
        for url in urls.values():
            wrk(url, args.warmup, args.connections)
        # Rounds interleave the contestants, so a noisy moment hurts them all alike.
        for _ in range(args.rounds):
            for name, url in urls.items():
                rounds[name].append(wrk(url, args.duration, args.connections))
    results = {
        name: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        for name, runs in rounds.items()
    }
    ratios = {
        "lumi_vs_fastapi": results["lumi"]["rps"] / results["fastapi"]["rps"],
        "lumi_vs_bare_asgi": results["lumi"]["rps"] / results["bare_asgi"]["rps"],
        "lumi_p99_vs_fastapi_p99": results["lumi"]["p99_ms"] / results["fastapi"]["p99_ms"],
    }
    if args.json:
        print(json.dumps({"results": results, "ratios": ratios}))
        return
    print(f"{'server':<10} {'req/s':>10} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for name, r in results.items():
        latencies = " ".join(f"{r[k]:>8.2f}" for k in ("p50_ms", "p90_ms", "p99_ms"))
        print(f"{name:<10} {r['rps']:>10.0f} {latencies} {r['errors']:>7.0f}")
    print(f"lumi / fastapi    throughput {ratios['lumi_vs_fastapi']:.2f}x   (goal >= 2.5x)")
    print(f"lumi / bare ASGI  throughput {ratios['lumi_vs_bare_asgi']:.2f}x   (goal >= 0.8x)")
    print(f"lumi / fastapi    p99        {ratios['lumi_p99_vs_fastapi_p99']:.2f}x   (goal <= 1.0x)")


if __name__ == "__main__":
    main()
