"""RPC benchmark, calling side: Lumi's gRPC channel and client vs a raw ``grpc.aio`` stub.

All contestants call the same raw grpc.aio server (bench/rpc_bench.py's ``raw-grpc``, pinned to
CPU 0) from this process (CPU 1), ``--concurrency`` calls in flight over one channel:

* ``raw-stub``      a grpc.aio stub with the protoc-generated message classes, a new
                    ``EchoRequest`` per call and the answer's fields read;
* ``lumi-channel``  :class:`lumi.transports.grpc.GrpcChannel` (JSON arguments in, JSON result
                    out: what every Lumi caller goes through);
* ``lumi-client``   a :class:`lumi.Client` of the service over that channel, without the
                    runtime's client middleware (results validated into ``Echoed``).

The server bounds the throughput, so the figure that matters here is the caller's CPU time
per call (this process, all its threads). Rounds alternate the order; figures are medians.

Run: ``python bench/rpc_client_bench.py [--duration 4] [--rounds 3] [--concurrency 32] [--json]``
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "http"))

import rpc_bench  # noqa: E402

KINDS = ["raw-stub", "lumi-channel", "lumi-client"]


async def _caller(kind: str, port: int, gen: Path) -> tuple[Callable[[], Awaitable[Any]], Any]:
    """(one call, the object to close) for ``kind``."""
    if kind == "raw-stub":
        import grpc.aio

        sys.path.insert(0, str(gen))
        pb2 = importlib.import_module("bench_pb2")
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        stub = channel.unary_unary(
            f"/{rpc_bench.PACKAGE}.bench.Bench/Echo",
            request_serializer=pb2.EchoRequest.SerializeToString,
            response_deserializer=pb2.EchoResponse.FromString,
        )

        async def raw() -> Any:
            answer = await stub(pb2.EchoRequest(text="hello world", n=42))
            return answer.value.text, answer.value.n

        return raw, channel
    from bench_service import Bench

    import lumi
    from lumi.model.context import Metadata
    from lumi.pipeline import Call
    from lumi.pipeline.client import Client
    from lumi.transports.grpc import GrpcChannel
    from lumi.transports.idl import IdlOptions

    lumi_channel = GrpcChannel(
        f"grpc://127.0.0.1:{port}",
        interface=lumi.interface(Bench),
        options=IdlOptions(package=rpc_bench.PACKAGE),
    )
    if kind == "lumi-channel":
        body = b'{"text":"hello world","n":42}'

        async def channel_call() -> Any:
            return await lumi_channel.call(Call("Bench", "echo", body, Metadata()))

        return channel_call, lumi_channel
    client: Any = Client.for_service(Bench, lumi_channel.call)

    async def client_call() -> Any:
        return await client.echo(text="hello world", n=42)

    return client_call, lumi_channel


async def load(kind: str, port: int, gen: Path, duration: float, concurrency: int) -> Any:
    """Calls of ``kind`` for ``duration`` seconds: (calls, seconds, CPU seconds of this process)."""
    call, resource = await _caller(kind, port, gen)
    try:
        for _ in range(concurrency):  # connect and warm up
            await call()
        count = 0

        async def worker(until: float) -> None:
            nonlocal count
            while time.perf_counter() < until:
                await call()
                count += 1

        cpu, started = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(started + duration) for _ in range(concurrency)))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        close = getattr(resource, "aclose", None) or resource.close
        await close()
    return count, elapsed, cpu


def run(duration: float, rounds: int, concurrency: int) -> dict[str, Any]:
    import uvloop

    figures: dict[str, list[dict[str, float]]] = {k: [] for k in KINDS}
    with tempfile.TemporaryDirectory() as tmp:
        gen = Path(tmp)
        rpc_bench.generate(gen)
        with rpc_bench.server("raw-grpc", gen) as (port, _pid):
            for round_no in range(rounds):
                for kind in KINDS if round_no % 2 == 0 else KINDS[::-1]:
                    count, elapsed, cpu = uvloop.run(load(kind, port, gen, duration, concurrency))
                    figures[kind].append(
                        {"rps": count / elapsed, "client_cpu_us_per_call": cpu / count * 1e6}
                    )
    medians = {
        kind: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        for kind, runs in figures.items()
    }
    raw = medians["raw-stub"]["client_cpu_us_per_call"]
    ratios = {k: m["client_cpu_us_per_call"] / raw for k, m in medians.items() if k != "raw-stub"}
    return {"medians": medians, "client_cpu_vs_raw": ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {int(rpc_bench.LOAD_CPU)})
    result = run(args.duration, args.rounds, args.concurrency)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for kind, m in result["medians"].items():
        ratio = result["client_cpu_vs_raw"].get(kind)
        versus = f"  ({ratio:.2f}x raw-stub)" if ratio else ""
        print(
            f"{kind:13s} {m['rps']:7.0f} calls/s  client CPU "
            f"{m['client_cpu_us_per_call']:6.1f} µs/call{versus}"
        )


if __name__ == "__main__":
    main()
