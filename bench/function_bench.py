"""Scale to zero: cold-start latency to the first response, and warm latency, of the function
runtime, against starting the peers a user would pick instead on demand.

Cold start — from sending a request with no instance running to its answer:

* ``lumi function``: the activator holds the endpoint, starts an instance (``lumi serve`` in
  a new process), forwards the call once it is ready;
* ``lumi process``: ``python -m lumi.runtimes.serve`` started by hand, polled until it
  answers (the function runtime minus the activator);
* ``fastapi uvicorn``: the same endpoint as FastAPI on uvicorn, started and polled likewise.

Warm — sequential calls on a keep-alive connection once running: through the activator (one
extra loopback hop), straight to a ``lumi serve`` process, and to FastAPI/uvicorn.

Rounds alternate the contestants; figures are medians. Goal: cold start under 1 s.
Run: ``python bench/function_bench.py [--rounds N] [--calls N] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from lumi import transports
from lumi.runtimes.base import ReplicaSpec
from lumi.runtimes.function import FunctionReplica, FunctionRuntime

HERE = Path(__file__).parent
BODY = json.dumps({"text": "hello", "n": 7}).encode()
HEADERS = {"content-type": "application/json"}
FUNCTION = (
    '\n[services.Bench]\nruntime = "function"\n\n[services.Bench.function]\nidle_timeout = 0.2\n'
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def post(session: aiohttp.ClientSession, url: str) -> None:
    async with session.post(f"{url}/Bench/echo", data=BODY, headers=HEADERS) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{url} answered {resp.status}: {await resp.text()}")
        await resp.read()


async def first_answer(session: aiohttp.ClientSession, url: str, timeout: float = 30) -> None:
    """Poll until ``url`` answers (every 5 ms, as a client retrying a refused connection)."""
    deadline = time.perf_counter() + timeout
    while True:
        try:
            await post(session, url)
            return
        except aiohttp.ClientConnectionError:
            if time.perf_counter() > deadline:
                raise
            await asyncio.sleep(0.005)


async def spawned(argv: list[str], cwd: Path, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env={**os.environ, **env},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def stopped(proc: asyncio.subprocess.Process) -> None:
    proc.terminate()
    await proc.wait()


class Contestants:
    def __init__(self, app: Path, session: aiohttp.ClientSession) -> None:
        self.app = app
        self.session = session

    async def process_cold(self) -> float:
        port = free_port()
        started = time.perf_counter()
        proc = await spawned([sys.executable, "-m", "lumi.runtimes.serve", "Bench"], self.app,
                             {"LUMI_PORT": str(port), "LUMI_LOG_LEVEL": "WARNING"})  # fmt: skip
        try:
            await first_answer(self.session, f"http://127.0.0.1:{port}")
            return time.perf_counter() - started
        finally:
            await stopped(proc)

    async def uvicorn_cold(self) -> float:
        port = free_port()
        started = time.perf_counter()
        proc = await spawned(
            [sys.executable, "-m", "uvicorn", "peers:fastapi_app", "--port", str(port),
             "--log-level", "warning", "--no-access-log"],
            HERE / "http", {},
        )  # fmt: skip
        try:
            await first_answer(self.session, f"http://127.0.0.1:{port}")
            return time.perf_counter() - started
        finally:
            await stopped(proc)


async def warm_us(session: aiohttp.ClientSession, url: str, calls: int) -> float:
    await post(session, url)
    started = time.perf_counter()
    for _ in range(calls):
        await post(session, url)
    return (time.perf_counter() - started) / calls * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="lumi-fn-bench-"))
    app = tmp / "bench"
    shutil.copytree(HERE / "http", app)
    (app / "lumi.toml").write_text((app / "lumi.toml").read_text() + FUNCTION)
    os.environ["LUMI_LOG_LEVEL"] = "WARNING"
    http = transports.get("http")
    sock = http.bind("127.0.0.1", 0)
    function_url = http.endpoint_of(sock)
    spec = ReplicaSpec(app_dir=str(app), env=None, service="Bench", replica=0,
                       endpoints={"Bench": [function_url]})  # fmt: skip
    runtime = FunctionRuntime()
    replica = await runtime.start(spec, {"http": sock}, lambda line: None)
    assert isinstance(replica, FunctionReplica)
    await replica.ready(30)
    cold: dict[str, list[float]] = {"lumi_function": [], "lumi_process": [], "fastapi_uvicorn": []}
    warm: dict[str, list[float]] = {"lumi_function": [], "lumi_process": [], "fastapi_uvicorn": []}
    try:
        async with aiohttp.ClientSession() as session:
            contestants = Contestants(app, session)

            async def function_cold() -> float:
                pool = replica.pool
                assert pool is not None
                while pool.instances:  # scaled to zero: its idle timeout passed
                    await asyncio.sleep(0.01)
                started = time.perf_counter()
                await post(session, function_url)
                return time.perf_counter() - started

            runs: list[tuple[str, Callable[[], Awaitable[float]]]] = [
                ("lumi_function", function_cold),
                ("lumi_process", contestants.process_cold),
                ("fastapi_uvicorn", contestants.uvicorn_cold),
            ]
            for round_ in range(args.rounds):
                for name, run in runs[round_ % 3 :] + runs[: round_ % 3]:
                    cold[name].append(await run())
            warm.update(await warm_rounds(session, app, function_url, args, replica))
    finally:
        await replica.stop(5)
        await runtime.aclose()
        sock.close()
        shutil.rmtree(tmp, ignore_errors=True)
    report(cold, warm, args.json)


async def warm_rounds(
    session: aiohttp.ClientSession,
    app: Path,
    function_url: str,
    args: argparse.Namespace,
    replica: FunctionReplica,
) -> dict[str, list[float]]:
    assert replica.pool is not None
    replica.pool.settings = replica.pool.settings.model_copy(update={"idle_timeout": 600.0})
    process_port, uvicorn_port = free_port(), free_port()
    serve = [sys.executable, "-m", "lumi.runtimes.serve", "Bench"]
    uvicorn = [sys.executable, "-m", "uvicorn", "peers:fastapi_app", "--port", str(uvicorn_port),
               "--log-level", "warning", "--no-access-log"]  # fmt: skip
    procs = [
        await spawned(serve, app, {"LUMI_PORT": str(process_port)}),
        await spawned(uvicorn, HERE / "http", {}),
    ]
    urls = {
        "lumi_function": function_url,
        "lumi_process": f"http://127.0.0.1:{process_port}",
        "fastapi_uvicorn": f"http://127.0.0.1:{uvicorn_port}",
    }
    results: dict[str, list[float]] = {name: [] for name in urls}
    try:
        for url in urls.values():
            await first_answer(session, url)
        names = list(urls)
        for round_ in range(args.rounds):
            for name in names[round_ % 3 :] + names[: round_ % 3]:
                results[name].append(await warm_us(session, urls[name], args.calls))
    finally:
        for proc in procs:
            await stopped(proc)
    return results


def report(cold: dict[str, list[float]], warm: dict[str, list[float]], as_json: bool) -> None:
    cold_ms = {name: round(statistics.median(v) * 1000, 1) for name, v in cold.items()}
    warm_us_ = {name: round(statistics.median(v), 1) for name, v in warm.items()}
    result = {
        "cold_start_ms": cold_ms,
        "warm_us_per_call": warm_us_,
        "cold_vs_fastapi": round(cold_ms["lumi_function"] / cold_ms["fastapi_uvicorn"], 2),
        "activator_hop_us": round(warm_us_["lumi_function"] - warm_us_["lumi_process"], 1),
        "goal_cold_ms": 1000,
    }
    if as_json:
        print(json.dumps(result))
        return
    print("cold start to first response (median ms)")
    for name, value in cold_ms.items():
        print(f"  {name:<16} {value:8.1f}")
    print("warm, sequential calls on a keep-alive connection (median µs/call)")
    for name, value in warm_us_.items():
        print(f"  {name:<16} {value:8.1f}")
    verdict = "OK" if cold_ms["lumi_function"] < 1000 else "MISSED"
    print(f"goal: cold start under 1000 ms -> {verdict}; "
          f"the activator adds {result['activator_hop_us']} µs per warm call")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
