"""The cost of one more hop: Lumi's one-hop and two-hop figures and a bare two-hop peer, side by
side in one run.

* ``lumi 1-hop``  — wrk → Back.echo, a ``lumi run`` replica (default config);
* ``lumi 2-hop``  — wrk → Front.relay → Back.echo, both replicas of the same ``lumi run``
  (the call between them goes through the whole client pipeline: correlation, tracing at the
  default sampling, metrics, deadline, retry budget, breaker, balancer, the HTTP channel);
* ``bare 1-hop``  — wrk → a bare ASGI echo on uvicorn (uvloop + httptools);
* ``bare 2-hop``  — wrk → a bare ASGI front → the bare ASGI echo, through one pooled aiohttp
  session (bench/hop/peers.py), the peer a user would write by hand.

Every server process is pinned to CPU 0 and wrk to CPU 1 (as bench/http_bench.py does). Each
round runs every contestant at 32 connections (throughput, p99) and at one connection (p50,
p90), in an order that alternates between rounds; figures are medians over rounds, and the
spread (min-max over rounds) is printed next to them. CPU µs per request (all of a contestant's
processes, from /proc) is the steadier figure on a busy machine.

Run: ``python bench/hop_bench.py [--duration 5] [--rounds 5] [--json]``.
Goals (issue 11): Lumi 2-hop ≥ 0.3x Lumi 1-hop throughput and ≥ 1.5x bare 2-hop; added p90
per hop at one connection ≤ 0.15 ms; p99 at 32 connections no worse than bare 2-hop's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from http_bench import HERE as HTTP_HERE
from http_bench import SERVER_CPU, pinned, uvicorn_server, wait_http, wrk

HOP = Path(__file__).resolve().parent / "hop"
BODY = b'{"text": "hello world", "n": 42}'


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time used so far by ``pids`` (Linux /proc)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def lumi_app() -> Iterator[tuple[dict[str, str], dict[str, int]]]:
    """``lumi run`` of bench/hop (Back and Front); yields {service: endpoint} and
    {"supervisor" or service: pid}."""
    with tempfile.TemporaryDirectory() as tmp:
        app = Path(tmp) / "hop"
        shutil.copytree(HOP, app)
        env = {**os.environ, "NO_COLOR": "1", "LUMI_LOG_LEVEL": "WARNING"}
        cmd = [*pinned(SERVER_CPU), sys.executable, "-m", "lumi.cli.main", "run", str(app)]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
        try:
            registry = app / ".lumi" / "registry.json"
            deadline = time.monotonic() + 60
            while True:
                text = registry.read_text() if registry.exists() else ""
                states = json.loads(text)["services"] if text else {}
                if len(states) == 2 and all(
                    r["state"] == "ready" for s in states.values() for r in s["replicas"]
                ):
                    break
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("lumi run did not become ready")
                time.sleep(0.05)
            endpoints = {name: s["endpoints"][0] for name, s in states.items()}
            pids = {"supervisor": proc.pid}
            pids.update({name: s["replicas"][0]["pid"] for name, s in states.items()})
            wait_http(f"{endpoints['Front']}/Front/relay", BODY)
            yield endpoints, pids
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


def uvicorn_pid(url: str) -> int:
    """The pid listening on ``url``'s port (uvicorn with one worker serves in its main
    process)."""
    port = url.split(":")[2].split("/")[0]
    out = subprocess.run(
        ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    return int(out.split("pid=")[1].split(",")[0])


def measure(url: str, pids: list[int], duration: int) -> dict[str, float]:
    """One round of one contestant: 32 connections, then one."""
    before = cpu_seconds(pids)
    many = wrk(url, duration, 32)
    used = cpu_seconds(pids) - before
    one = wrk(url, max(2, duration // 2), 1)
    return {
        "rps": many["rps"],
        "p99_ms": many.get("p99_ms", 0.0),
        "cpu_us": used / max(many["rps"] * duration, 1.0) * 1e6,
        "p50_1c_ms": one.get("p50_ms", 0.0),
        "p90_1c_ms": one.get("p90_ms", 0.0),
        "rps_1c": one["rps"],
        "errors": many["errors"] + one["errors"],
    }


def run(duration: int, rounds: int, warmup: int) -> dict[str, dict[str, float]]:
    with contextlib.ExitStack() as stack:
        endpoints, by_name = stack.enter_context(lumi_app())
        lumi_pids = list(by_name.values())
        bare_back = stack.enter_context(uvicorn_server("peers:bare_app", cwd=HTTP_HERE))
        bare_base = bare_back.removesuffix("/Bench/echo")
        bare_front = stack.enter_context(
            uvicorn_server("peers:front_app", cwd=HOP, env={"HOP_BACK_URL": bare_base})
        )
        bare_pids = [uvicorn_pid(bare_back), uvicorn_pid(bare_front)]
        contestants: dict[str, tuple[str, list[int]]] = {
            "lumi_1hop": (f"{endpoints['Back']}/Back/echo", lumi_pids),
            "lumi_2hop": (f"{endpoints['Front']}/Front/relay", lumi_pids),
            "bare_1hop": (bare_back, bare_pids),
            "bare_2hop": (bare_front, bare_pids),
        }
        for url, _ in contestants.values():
            wrk(url, warmup, 32)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in contestants}
        names = list(contestants)
        for index in range(rounds):
            # Alternate the order, so a drift of the machine does not land on one contestant.
            for name in names if index % 2 == 0 else names[::-1]:
                url, pids = contestants[name]
                runs[name].append(measure(url, pids, duration))
    results: dict[str, dict[str, float]] = {}
    for name, figures in runs.items():
        summary: dict[str, float] = {}
        for key in figures[0]:
            values = [f[key] for f in figures]
            summary[key] = sum(values) if key == "errors" else statistics.median(values)
            if key in ("rps", "cpu_us"):
                summary[f"{key}_min"], summary[f"{key}_max"] = min(values), max(values)
        results[name] = summary
    return results


def ratios(r: dict[str, dict[str, float]]) -> dict[str, float]:
    lumi1, lumi2, bare2 = r["lumi_1hop"], r["lumi_2hop"], r["bare_2hop"]
    return {
        "two_vs_one_hop": lumi2["rps"] / lumi1["rps"],
        "two_vs_one_hop_cpu": lumi1["cpu_us"] / lumi2["cpu_us"],
        "lumi_vs_bare_2hop": lumi2["rps"] / bare2["rps"],
        "lumi_vs_bare_2hop_cpu": bare2["cpu_us"] / lumi2["cpu_us"],
        "added_p90_per_hop_ms": lumi2["p90_1c_ms"] - lumi1["p90_1c_ms"],
        "p99_vs_bare_2hop": lumi2["p99_ms"] / bare2["p99_ms"],
    }


def report(results: dict[str, dict[str, float]], rounds: int) -> None:
    print(f"medians of {rounds} alternating rounds (min-max in brackets); servers on CPU 0")
    print(
        f"{'':<10} {'req/s @32':>22} {'p99 @32':>8} {'CPU µs/req':>18} "
        f"{'p50 @1':>7} {'p90 @1':>7} {'errors':>6}"
    )
    for name, r in results.items():
        rps = f"{r['rps']:.0f} [{r['rps_min']:.0f}-{r['rps_max']:.0f}]"
        cpu = f"{r['cpu_us']:.0f} [{r['cpu_us_min']:.0f}-{r['cpu_us_max']:.0f}]"
        print(
            f"{name:<10} {rps:>22} {r['p99_ms']:>8.2f} {cpu:>18} "
            f"{r['p50_1c_ms']:>7.3f} {r['p90_1c_ms']:>7.3f} {r['errors']:>6.0f}"
        )
    q = ratios(results)
    check: Callable[[bool], str] = lambda ok: "OK" if ok else "MISSED"  # noqa: E731
    print(
        f"lumi 2-hop / 1-hop throughput   {q['two_vs_one_hop']:.2f}x "
        f"(CPU-based {q['two_vs_one_hop_cpu']:.2f}x)  goal >= 0.3x: "
        f"{check(q['two_vs_one_hop'] >= 0.3)}"
    )
    print(
        f"lumi 2-hop / bare 2-hop         {q['lumi_vs_bare_2hop']:.2f}x "
        f"(CPU-based {q['lumi_vs_bare_2hop_cpu']:.2f}x)  goal >= 1.5x: "
        f"{check(q['lumi_vs_bare_2hop'] >= 1.5)}"
    )
    print(
        f"added p90 per hop @1 connection {q['added_p90_per_hop_ms']:.3f} ms  goal <= 0.15 ms: "
        f"{check(q['added_p90_per_hop_ms'] <= 0.15)}"
    )
    print(
        f"p99 @32, lumi 2-hop / bare      {q['p99_vs_bare_2hop']:.2f}x  goal <= 1.0x: "
        f"{check(q['p99_vs_bare_2hop'] <= 1.0)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=5, help="seconds per 32-connection run")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="median of this many rounds")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    results = run(args.duration, args.rounds, args.warmup)
    if args.json:
        print(json.dumps({"results": results, "ratios": ratios(results)}))
        return
    report(results, args.rounds)


if __name__ == "__main__":
    main()
