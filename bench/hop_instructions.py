"""Instructions per two-hop call, counted by valgrind (callgrind): a figure the machine's other
load does not move, for comparing two versions of the hop on a shared machine.

One process runs the whole two-hop path over loopback HTTP, as ``lumi run`` assembles it:
a driver (Lumi's HTTP client, 32 calls in flight) → Front's HTTP server and server stack
(observer, guard, dispatcher, dedupe) → Front.relay → the client stack (client, observer,
resilience, balancer) → HttpChannel → Back's HTTP server and server stack → Back.echo.
Tracing at the default sampling (ratio 1, at most 100 traces a second), metrics, deadlines,
retry budget, breakers and the guard are all on; the collector runs as in a replica
(``gc.freeze()``, thresholds 10000/10/10). Instructions are counted only while the measured
calls run (after a warm-up), user space only: the kernel's part (the socket calls) is not in.

Run: ``python bench/hop_instructions.py [--calls 640] [--src DIR]`` (needs valgrind;
``--src`` measures another checkout's ``src``, e.g. ``git worktree`` of main).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BODY = b'{"text": "hello world", "n": 42}'
CONCURRENCY = 32


async def two_hops(calls: int, counted: bool) -> None:
    sys.path.insert(0, str(HERE / "hop"))
    from hop_services import Back, Front

    from lumi.brokers import create_broker
    from lumi.pipeline import compose
    from lumi.runtime_services.observability.tracing import setup_tracing
    from lumi.runtime_services.resilience.balancer import Balancer
    from lumi.runtimes import stack
    from lumi.runtimes.host import Host
    from lumi.security.guard import Guard
    from lumi.transports._http_client import ConnectionPool
    from lumi.transports.base import ServerSettings
    from lumi.transports.http import HttpChannel, HttpServer

    tracing = setup_tracing(service="hop", store=None, sample_ratio=1.0, max_per_second=100.0)
    runtime = stack.RuntimeServices(tracing=tracing)
    servers: dict[str, HttpServer] = {}

    def channel_for(name: str) -> object:
        balancer = Balancer(
            name, [HttpChannel(servers[name].endpoint)], breakers=runtime.breakers("Front")
        )
        return compose(balancer, stack.client_middlewares("Front", runtime))

    with tempfile.TemporaryDirectory() as tmp:
        for cls in (Back, Front):
            name = cls.__name__
            guard = Guard("hop", {}, mtls=False, hosted=lambda _: None)
            host = Host(
                [cls],
                broker=create_broker("memory", app_dir=Path(tmp)),
                channel_for=channel_for,  # type: ignore[arg-type]
                app="hop",
                middlewares=stack.server_middlewares(name, runtime, guard=guard),
                guards=stack.server_guards(name, runtime),
                external=["Back"] if name == "Front" else [],
            )
            await host.start()
            servers[name] = HttpServer(host.dispatcher.handle, ServerSettings(interfaces={}))
            await servers[name].start()
        host_, port = servers["Front"].endpoint.removeprefix("http://").split(":")
        pool = ConnectionPool(host_, int(port), size=CONCURRENCY)
        await drive(pool, host_, calls, instrument if counted else None)


async def drive(pool: Any, host: str, calls: int, meter: Callable[[str], None] | None) -> None:
    """``calls`` POSTs of Front.relay through ``pool``, CONCURRENCY in flight, after a warm-up
    and with the collector set as in a replica; ``meter("on")``/``("off")`` around them."""
    head = b"POST /Front/relay HTTP/1.1\r\nhost: %b\r\ncontent-type: application/json\r\n" % (
        host.encode()
    )
    head += b"content-length: %d\r\n\r\n" % len(BODY)

    async def worker(n: int) -> None:
        for _ in range(n):
            status, answer = await pool.request(head, BODY)
            if status != 200:
                raise RuntimeError(answer.decode())

    await asyncio.gather(*(worker(200) for _ in range(CONCURRENCY)))  # warm-up (handshakes)
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    if meter is not None:
        meter("on")
    await asyncio.gather(*(worker(calls // CONCURRENCY) for _ in range(CONCURRENCY)))
    if meter is not None:
        meter("off")


def instrument(state: str) -> None:
    """Turn callgrind's counting on or off for this process (blocking on purpose: nothing
    else runs meanwhile)."""
    subprocess.run(["callgrind_control", "-i", state, str(os.getpid())], capture_output=True)


def callgrind(script: Path, child_args: list[str], src: Path, tmp: Path) -> Path:
    """Run ``script --child child_args`` under callgrind with ``src`` as Lumi's source, counting
    only what the child turns on (:func:`instrument`); the path of its output."""
    out = tmp / "callgrind.out"
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(src.resolve())}
    cmd = [
        "valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
        sys.executable, str(script), "--child", *child_args,
    ]  # fmt: skip
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=640)
    parser.add_argument("--src", type=Path, default=HERE.parent / "src")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    calls = args.calls // CONCURRENCY * CONCURRENCY
    if args.child:
        import uvloop

        uvloop.run(two_hops(calls, counted=True))
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = callgrind(Path(__file__), ["--calls", str(calls)], args.src, Path(tmp))
        total = sum(
            int(line.split()[1])
            for path in out.parent.glob("callgrind.out*")
            for line in path.read_text(errors="replace").splitlines()
            if line.startswith("totals:")
        )
    print(f"{total / calls:,.0f} instructions per two-hop call ({args.src}, {calls} calls)")


if __name__ == "__main__":
    main()
