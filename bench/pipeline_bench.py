"""The cost of the runtime services: the whole pipeline (structured logs at INFO to a file,
tracing sampled at 10% into the local span store, Prometheus metrics, deadlines, retries, budget,
breakers, dedupe) against the bare dispatcher.

* in-process: µs per call through ``lumi.App(observe=False)`` vs ``lumi.App()``;
* HTTP: ``wrk`` → Front → Back, two real processes each serving over Lumi's HTTP transport, with
  the bare dispatcher in both or the full pipeline in both (server stack in each, client stack on
  Front's call to Back). Throughput is the median over rounds that alternate the two modes.

Run: ``python bench/pipeline_bench.py [--calls N] [--duration S] [--rounds R] [--json]``
(``LUMI_BENCH_SAMPLE_RATIO=0`` for the HTTP part without tracing). Both server processes share
one CPU and wrk runs on the other; the CPU time per request is the steadier figure on a busy
machine.
Target (issue 5): under 15% HTTP throughput loss.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic

import lumi
from lumi.config import AppConfig, load_config
from lumi.runtime_services.observability.logs import configure_logging, reset_logging
from lumi.runtime_services.observability.tracing import setup_tracing
from lumi.runtimes import stack
from lumi.transports.http import HttpTransport

sys.path.insert(0, str(Path(__file__).resolve().parent))
from http_bench import SERVER_CPU, pinned, wait_http, wrk

BODY = b'{"text": "hello world", "n": 42}'


class Echoed(pydantic.BaseModel):
    text: str
    n: int


class Back(lumi.Service):
    @lumi.api(idempotent=True)
    async def echo(self, text: str, n: int) -> Echoed:
        return Echoed(text=text, n=n)


class Front(lumi.Service):
    back: Back

    @lumi.api(idempotent=True)
    async def relay(self, text: str, n: int) -> Echoed:
        return await self.back.echo(text=text, n=n)


def _config(root: Path) -> AppConfig:
    ratio = float(os.environ.get("LUMI_BENCH_SAMPLE_RATIO", "0.1"))
    (root / "lumi.toml").write_text(
        '[app]\nname = "pipeline"\nservices = ["pipeline_bench:Back"]\n'
        f"[tracing]\nsample_ratio = {ratio}\n"
        f"store = {os.environ.get('LUMI_BENCH_STORE', 'true')}\n"
        "[security]\nmtls = false\n"  # plaintext, like the peers it is compared with
    )
    return load_config(root)


# ---------------------------------------------------------------------------------- in-process


async def _per_call_us(client: Any, calls: int) -> float:
    started = time.perf_counter()
    for i in range(calls):
        await client.relay(text="x", n=i)
    return (time.perf_counter() - started) / calls * 1e6


async def inproc(calls: int, repeats: int, workdir: Path) -> dict[str, float]:
    """Both apps run side by side and take turns, so machine drift hits both alike."""
    configure_logging(service="bench", log_file=workdir / "inproc.log", level="INFO")
    tracing = setup_tracing(service="bench", store=workdir / "traces.db", sample_ratio=0.1)
    runtime = stack.RuntimeServices(tracing=tracing)
    try:
        async with (
            lumi.App([Back, Front], observe=False) as bare_app,
            lumi.App([Back, Front], runtime=runtime) as full_app,
        ):
            bare_client, full_client = bare_app.client(Front), full_app.client(Front)
            await _per_call_us(bare_client, 200)
            await _per_call_us(full_client, 200)
            bare_runs, full_runs = [], []
            for _ in range(max(repeats, 5)):
                bare_runs.append(await _per_call_us(bare_client, calls))
                full_runs.append(await _per_call_us(full_client, calls))
    finally:
        tracing.shutdown()
        reset_logging()
    bare, full = statistics.median(bare_runs), statistics.median(full_runs)
    return {"bare_us": bare, "full_us": full, "overhead_us": full - bare}


# ------------------------------------------------------------------------------------- HTTP


async def serve(mode: str, role: str, fd: int, back_url: str | None, workdir: Path) -> None:
    """One benchmark server process (``--serve``): Back, or Front calling Back."""
    from lumi.brokers.memory import MemoryBroker
    from lumi.pipeline import compose
    from lumi.runtime_services.resilience.balancer import Balancer
    from lumi.runtimes.host import Host
    from lumi.transports.http import HttpChannel, HttpServer

    service = Back if role == "back" else Front
    name = service.name
    if mode == "full":
        config = _config(workdir)
        runtime = stack.setup_process(
            config, name, log_file=workdir / f"{name}.log", stream_json=True
        )
        del config
    else:
        logging_off = workdir / "unused.log"
        configure_logging(service=name, log_file=logging_off, level="WARNING")
        runtime = None
    channel = HttpChannel(back_url) if back_url else None
    client_stack = stack.client_middlewares(name) if runtime else []
    send: object = None
    if channel is not None:
        # The full pipeline balances over the callee's endpoints behind breakers, as a replica
        # does; the bare one calls the channel directly.
        breakers = runtime.breakers(name) if runtime else None
        send = Balancer("Back", [channel], breakers=breakers) if breakers else channel.call

    def channel_for(target: str) -> object:
        assert send is not None
        return compose(send, client_stack)  # type: ignore[arg-type]

    host = Host(
        [service],
        broker=MemoryBroker(),
        channel_for=channel_for,  # type: ignore[arg-type]
        middlewares=stack.server_middlewares(name) if runtime else [],
        guards=stack.server_guards(name) if runtime else [],
        external=["Back"] if role == "front" else [],
        publish_middlewares=stack.publish_middlewares if runtime else None,
    )
    await host.start()
    server = HttpServer(host.dispatcher.handle, sock=socket.socket(fileno=fd))
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.aclose()
    await host.stop()
    if channel is not None:
        await channel.aclose()
    if runtime is not None:
        runtime.shutdown()


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time used so far by ``pids`` (Linux /proc)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def pair(mode: str, workdir: Path) -> Iterator[tuple[str, list[int]]]:
    """Back and Front processes in ``mode`` ("bare" or "full"); yields Front's relay URL and
    both pids."""
    here = str(Path(__file__).resolve())
    # The sockets are bound here and handed down (as lumi run does), so no other process on
    # the machine can take a port between choosing it and listening on it.
    back_sock, front_sock = (HttpTransport().bind("127.0.0.1", 0) for _ in range(2))
    back_port, front_port = back_sock.getsockname()[1], front_sock.getsockname()[1]
    # the servers import the same lumi as this process (and the benchmark's own module)
    path = [str(Path(here).parent), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}
    base = [*pinned(SERVER_CPU), sys.executable, here, "--serve", mode, "--workdir", str(workdir)]
    back_fd, front_fd = back_sock.fileno(), front_sock.fileno()
    procs = [
        subprocess.Popen(
            [*base, "--role", "back", "--fd", str(back_fd)], env=env, pass_fds=(back_fd,)
        ),
    ]
    try:
        wait_http(f"http://127.0.0.1:{back_port}/Back/echo", BODY)
        front = ["--role", "front", "--fd", str(front_fd)]
        front += ["--back", f"http://127.0.0.1:{back_port}"]
        procs.append(subprocess.Popen([*base, *front], env=env, pass_fds=(front_fd,)))
        url = f"http://127.0.0.1:{front_port}/Front/relay"
        wait_http(url, BODY)
        yield url, [proc.pid for proc in procs]
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)
        back_sock.close()
        front_sock.close()


def http(duration: int, rounds: int, connections: int, workdir: Path) -> dict[str, float]:
    figures: dict[str, list[dict[str, float]]] = {"bare": [], "full": []}
    for index in range(rounds):
        # Alternate which mode goes first, so a drift of the machine during a round (or a
        # penalty for going second) does not land on one mode only.
        for mode in ("bare", "full") if index % 2 == 0 else ("full", "bare"):
            with pair(mode, workdir / mode) as (url, pids):
                wrk(url, 1, connections)  # warm-up
                before = cpu_seconds(pids)
                run = wrk(url, duration, connections)
                run["cpu_us"] = (cpu_seconds(pids) - before) / (run["rps"] * duration) * 1e6
                figures[mode].append(run)
    result: dict[str, float] = {}
    for mode, runs in figures.items():
        result[f"{mode}_rps"] = statistics.median(r["rps"] for r in runs)
        result[f"{mode}_p99_ms"] = statistics.median(r.get("p99_ms", 0.0) for r in runs)
        result[f"{mode}_errors"] = sum(r["errors"] for r in runs)
        result[f"{mode}_cpu_us_per_request"] = statistics.median(r["cpu_us"] for r in runs)
    result["loss_pct"] = (1 - result["full_rps"] / result["bare_rps"]) * 100
    # CPU per request is steadier than throughput on a shared machine; when the servers are
    # CPU-bound, throughput loss = 1 - bare CPU / full CPU.
    result["cpu_loss_pct"] = (
        1 - result["bare_cpu_us_per_request"] / result["full_cpu_us_per_request"]
    ) * 100
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--no-http", action="store_true", help="only the in-process figures")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--serve", choices=("bare", "full"), help=argparse.SUPPRESS)
    parser.add_argument("--role", choices=("back", "front"), help=argparse.SUPPRESS)
    parser.add_argument("--fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--back", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        args.workdir.mkdir(parents=True, exist_ok=True)
        import uvloop

        uvloop.run(serve(args.serve, args.role, args.fd, args.back, args.workdir))
        return
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        result: dict[str, object] = {
            "inproc": asyncio.run(inproc(args.calls, args.repeats, workdir))
        }
        if not args.no_http:
            if not shutil.which("wrk"):
                sys.exit("wrk is not installed: apt-get install wrk")
            result["http"] = http(args.duration, args.rounds, args.connections, workdir)
    if args.json:
        print(json.dumps(result))
        return
    ip = result["inproc"]
    assert isinstance(ip, dict)
    print("in-process Front.relay → Back.echo (two calls through the pipeline per request)")
    print(f"  bare dispatcher   {ip['bare_us']:8.1f} µs/request")
    print(f"  full pipeline     {ip['full_us']:8.1f} µs/request  (+{ip['overhead_us']:.1f} µs)")
    if "http" in result:
        h = result["http"]
        assert isinstance(h, dict)
        ratio = float(os.environ.get("LUMI_BENCH_SAMPLE_RATIO", "0.1"))
        print(f"HTTP: wrk → Front → Back (two processes; logs INFO, tracing {ratio:.0%})")
        for mode in ("bare", "full"):
            print(
                f"  {mode:<5} {h[f'{mode}_rps']:8.0f} req/s   p99 {h[f'{mode}_p99_ms']:6.2f} ms"
                f"   CPU {h[f'{mode}_cpu_us_per_request']:6.0f} µs/request (both processes)"
            )
        verdict = "OK" if h["loss_pct"] < 15 else "MISSED"
        print(f"  throughput loss   {h['loss_pct']:7.1f} %      (target < 15%: {verdict})")
        print(f"  CPU-based loss    {h['cpu_loss_pct']:7.1f} %")


if __name__ == "__main__":
    main()
