"""RPC benchmark: Lumi's gRPC and Thrift bindings vs raw servers of the same libraries.

Contestants, each one server process pinned to CPU 0 serving the same ``echo(text, n) ->
Echoed`` method (bench/http/bench_service.py) from the same generated IDL:

* ``lumi-grpc``   ``lumi run`` of the bench app with ``rpc = "grpc"``: a real replica process
                  (the runtime's server middleware, the dispatcher, pydantic validation);
* ``raw-grpc``    a hand-written grpc.aio servicer on the protoc-generated ``bench_pb2``;
* ``raw-grpc-tuned``  the same with the gRPC core experiments Lumi's transport picks
                  (``GRPC_EXPERIMENTS``, see lumi/transports/grpc.py): the fair peer of a
                  tuning anyone could apply;
* ``lumi-grpc-transport``  Lumi's GrpcServer alone, its handler echoing the JSON arguments
                  (no pipeline): what the gRPC binding itself costs;
* ``lumi-grpc-dispatch``   GrpcServer + the dispatcher (validation, the service method),
                  without the runtime's middleware (tracing, metrics, idempotency);
* ``lumi-thrift`` the same with ``rpc = "thrift"``;
* ``raw-thrift``  thriftpy2's threaded server for the same IDL (Cython binary protocol, framed
                  transport: its fastest per call);
* ``raw-thrift-aio`` thriftpy2's asyncio server (framed binary), the async peer.

The load generator (CPU 1) is the same for both sides of a pair and does almost nothing per
call: pre-serialized request bytes over one grpc.aio channel, or over raw framed sockets for
Thrift, ``--concurrency`` calls in flight. Rounds alternate which side goes first; figures are
medians. Besides throughput and latency it reports the server's CPU time per call (from
/proc), which stays meaningful even if the load generator is the bottleneck.

Codec figures (``codec``): JSON ⇄ protobuf by Lumi's compiled converter vs ``json_format``, and
the Thrift libraries' struct round trip (thriftpy2 vs Apache ``thrift``), which decided the
library (see lumi/transports/thrift.py).

Run: ``python bench/rpc_bench.py [--duration 5] [--rounds 3] [--concurrency 32] [--json]``
(``--codec-only`` for the codec figures alone, ``--only grpc|thrift`` for one wire's pairs).
Goal (issue 13): Lumi >= 0.9x the raw server's throughput, p99 within 10%.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.util
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
import timeit
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
APP = HERE / "http"
SERVER_CPU, LOAD_CPU = "0", "1"
PACKAGE = "bench"
PAIRS = [
    ("lumi-grpc", "raw-grpc"),
    ("lumi-grpc", "raw-grpc-tuned"),
    ("lumi-grpc-transport", "raw-grpc"),
    ("lumi-grpc-dispatch", "raw-grpc"),
    ("lumi-thrift", "raw-thrift"),
    ("lumi-thrift", "raw-thrift-aio"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(cpu: str) -> list[str]:
    many = (os.cpu_count() or 1) > 1
    return ["taskset", "-c", cpu] if shutil.which("taskset") and many else []


def generate(out: Path) -> None:
    """bench.proto (compiled by protoc for the raw server) and bench.thrift."""
    sys.path.insert(0, str(APP))
    from bench_service import Bench

    import lumi
    from lumi.codegen import get_generator
    from lumi.codegen.base import GenerateRequest

    iface = lumi.interface(Bench)
    for target in ("proto", "thrift"):
        files = get_generator(target).generate(GenerateRequest([iface], package=PACKAGE))
        for name, text in files.items():
            if not name.endswith(".json"):
                (out / name).write_text(text)
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I.", "--python_out=.",
         "--grpc_python_out=.", "bench.proto"], cwd=out, check=True,
    )  # fmt: skip


# -- servers (child processes) -----------------------------------------------------------------


def serve(kind: str, port: int, gen: Path) -> None:
    if kind == "raw-thrift":
        _raw_thrift(port, gen)
        return
    if kind == "raw-thrift-aio":
        _raw_thrift_aio(port, gen)
        return
    import uvloop

    uvloop.run(_serve_async(kind, port, gen))


async def _serve_async(kind: str, port: int, gen: Path) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    if kind.startswith("raw-grpc"):
        server = await _raw_grpc(port, gen)
        print("ready", flush=True)
        await stop.wait()
        await server.stop(0)
        return
    lumi_server = await _lumi_grpc_part(kind, port)
    print("ready", flush=True)
    await stop.wait()
    await lumi_server.aclose()


async def _lumi_grpc_part(kind: str, port: int) -> Any:
    """Lumi's GrpcServer on the bench app's IDL, with only part of the pipeline behind it."""
    sys.path.insert(0, str(APP))
    from bench_service import Bench

    import lumi
    from lumi.pipeline import Call
    from lumi.pipeline.dispatch import Dispatcher
    from lumi.transports import idl
    from lumi.transports.base import ServerSettings
    from lumi.transports.grpc import GrpcServer

    async def echo_arguments(call: Call) -> bytes:
        return call.body  # echo's arguments {text, n} are its result's fields

    handler = echo_arguments
    if kind == "lumi-grpc-dispatch":
        dispatcher = Dispatcher()
        dispatcher.add(Bench())
        handler = dispatcher.handle
    idl.configure(idl.for_app(APP, PACKAGE))
    settings = ServerSettings(interfaces={"Bench": lumi.interface(Bench)})
    server = GrpcServer(handler, settings, port=port)
    await server.start()
    return server


async def _raw_grpc(port: int, gen: Path) -> Any:
    import grpc.aio

    sys.path.insert(0, str(gen))
    pb2 = importlib.import_module("bench_pb2")
    pb2_grpc = importlib.import_module("bench_pb2_grpc")

    class Servicer(pb2_grpc.BenchServicer):  # type: ignore[misc, name-defined]
        async def Echo(self, request: Any, context: Any) -> Any:
            return pb2.EchoResponse(value=pb2.Echoed(text=request.text, n=request.n))

    server = grpc.aio.server()
    pb2_grpc.add_BenchServicer_to_server(Servicer(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server


def _raw_thrift(port: int, gen: Path) -> None:
    import thriftpy2
    from thriftpy2.protocol import TCyBinaryProtocolFactory
    from thriftpy2.rpc import make_server
    from thriftpy2.transport import TCyFramedTransportFactory

    module = thriftpy2.load(str(gen / "bench.thrift"), module_name="bench_thrift")

    class Handler:
        def echo(self, text: str, n: int) -> Any:
            return module.Echoed(text=text, n=n)

    server = make_server(
        module.Bench, Handler(), "127.0.0.1", port,
        proto_factory=TCyBinaryProtocolFactory(), trans_factory=TCyFramedTransportFactory(),
    )  # fmt: skip
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    print("ready", flush=True)
    server.serve()


def _raw_thrift_aio(port: int, gen: Path) -> None:
    import thriftpy2
    import uvloop
    from thriftpy2.contrib.aio.protocol import TAsyncBinaryProtocolFactory
    from thriftpy2.contrib.aio.rpc import make_server
    from thriftpy2.contrib.aio.transport import TAsyncFramedTransportFactory

    module = thriftpy2.load(str(gen / "bench.thrift"), module_name="bench_thrift")

    class Handler:
        async def echo(self, text: str, n: int) -> Any:
            return module.Echoed(text=text, n=n)

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    server = make_server(
        module.Bench, Handler(), "127.0.0.1", port, proto_factory=TAsyncBinaryProtocolFactory(),
        trans_factory=TAsyncFramedTransportFactory(), loop=loop, client_timeout=None,
    )  # fmt: skip
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    print("ready", flush=True)
    server.serve()


@contextlib.contextmanager
def server(kind: str, gen: Path) -> Iterator[tuple[int, int]]:
    """(port, pid of the serving process) of a running contestant."""
    if kind in ("lumi-grpc", "lumi-thrift"):
        with lumi_run(kind.removeprefix("lumi-")) as running:
            yield running
        return
    port = free_port()
    cmd = [*pinned(SERVER_CPU), sys.executable, __file__, "serve", kind, str(port), str(gen)]
    env = dict(os.environ)
    if kind == "raw-grpc-tuned":
        from lumi.transports.grpc import _GRPC_EXPERIMENTS

        env["GRPC_EXPERIMENTS"] = _GRPC_EXPERIMENTS
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"{kind} did not start: {line!r}")
        yield port, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def lumi_run(transport: str) -> Iterator[tuple[int, int]]:
    """``lumi run`` of the bench app with ``rpc = transport``: (port, the replica's pid)."""
    with tempfile.TemporaryDirectory() as tmp:
        app = Path(tmp) / "bench"
        shutil.copytree(APP, app)
        with (app / "lumi.toml").open("a") as config:
            config.write(f'\n[env.rpc.defaults]\nrpc = "{transport}"\n')
        env = {**os.environ, "NO_COLOR": "1", "LUMI_LOG_LEVEL": "WARNING"}
        cmd = [*pinned(SERVER_CPU), sys.executable, "-m", "lumi.cli.main", "run", str(app),
               "--env", "rpc"]  # fmt: skip
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
        try:
            registry = app / ".lumi" / "registry.json"
            deadline = time.monotonic() + 60
            while not registry.exists() or '"ready"' not in registry.read_text():
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("lumi run did not become ready")
                time.sleep(0.05)
            state = json.loads(registry.read_text())["services"]["Bench"]
            yield int(state["endpoints"][0].rsplit(":", 1)[1]), int(state["replicas"][0]["pid"])
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (and its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- load --------------------------------------------------------------------------------------


async def load_grpc(port: int, gen: Path, duration: float, concurrency: int) -> list[float]:
    import grpc.aio

    sys.path.insert(0, str(gen))
    pb2 = importlib.import_module("bench_pb2")
    data = pb2.EchoRequest(text="hello world", n=42).SerializeToString()
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = channel.unary_unary(f"/{PACKAGE}.bench.Bench/Echo")
        await stub(data)  # connect

        async def worker(until: float) -> None:
            clock = time.perf_counter
            while (start := clock()) < until:
                await stub(data)
                latencies.append(clock() - start)

        until = time.perf_counter() + duration
        await asyncio.gather(*(worker(until) for _ in range(concurrency)))
    return latencies


async def load_thrift(port: int, gen: Path, duration: float, concurrency: int) -> list[float]:
    import thriftpy2
    from thriftpy2.protocol import TCyBinaryProtocolFactory
    from thriftpy2.thrift import TMessageType
    from thriftpy2.transport import TCyMemoryBuffer

    module = thriftpy2.load(str(gen / "bench.thrift"), module_name="bench_load_thrift")
    buffer = TCyMemoryBuffer()
    proto = TCyBinaryProtocolFactory().get_protocol(buffer)
    proto.write_message_begin("echo", TMessageType.CALL, 1)
    proto.write_struct(module.Bench.echo_args(text="hello world", n=42))
    proto.write_message_end()
    buffer.flush()
    body = buffer.getvalue()
    frame = len(body).to_bytes(4, "big") + body
    latencies: list[float] = []

    async def worker(until: float) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        clock = time.perf_counter
        try:
            while (start := clock()) < until:
                writer.write(frame)
                size = int.from_bytes(await reader.readexactly(4), "big")
                await reader.readexactly(size)
                latencies.append(clock() - start)
        finally:
            writer.close()

    until = time.perf_counter() + duration
    await asyncio.gather(*(worker(until) for _ in range(concurrency)))
    return latencies


def measure(kind: str, gen: Path, duration: float, concurrency: int) -> dict[str, float]:
    with server(kind, gen) as (port, pid):
        load = load_grpc if "grpc" in kind else load_thrift
        import uvloop

        uvloop.run(load(port, gen, 0.5, concurrency))  # warm up
        cpu = cpu_seconds(pid)
        started = time.perf_counter()
        latencies = uvloop.run(load(port, gen, duration, concurrency))
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(pid) - cpu
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "server_cpu_us_per_call": cpu / len(latencies) * 1e6,
    }


# -- codecs ------------------------------------------------------------------------------------


def codecs() -> dict[str, float]:
    """µs per conversion of a shop Order: JSON bytes → protobuf bytes and back."""
    sys.path.insert(0, str(HERE.parent / "examples" / "shop"))
    from google.protobuf import json_format
    from shop.orders import Orders

    import lumi
    from lumi.transports.grpc import service_codec

    codec = service_codec(lumi.interface(Orders), "shop")
    _, _, response = codec.methods["get"]
    order = {
        "id": "abc123", "customer": "ada",
        "lines": [{"sku": f"sku{i}", "qty": i + 1} for i in range(5)],
        "total_cents": 1234, "placed_at": "2026-01-02T03:04:05.123456Z",
    }  # fmt: skip
    import pydantic_core

    json_bytes = pydantic_core.to_json({"value": order})
    wire = response.encode(pydantic_core.from_json(json_bytes))
    proto_json = json_bytes  # json_name is Lumi's key, so json_format reads Lumi's JSON
    n = 20000

    def best(fn: Any) -> float:
        return min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e6

    out = {
        "lumi_json_to_proto_us": best(lambda: response.encode(pydantic_core.from_json(json_bytes))),
        "lumi_proto_to_json_us": best(lambda: pydantic_core.to_json(response.decode(wire))),
        "json_format_json_to_proto_us": best(
            lambda: json_format.Parse(proto_json, response.cls()).SerializeToString()
        ),
        "json_format_proto_to_json_us": best(
            lambda: json_format.MessageToJson(response.cls.FromString(wire)).encode()
        ),
    }
    out.update(_thrift_codecs())
    return out


def _thrift_codecs() -> dict[str, float]:
    """µs per struct round trip (serialize + deserialize) of an Order, per library/protocol."""
    import thriftpy2
    from thriftpy2.protocol import TCompactProtocolFactory, TCyBinaryProtocolFactory
    from thriftpy2.utils import deserialize, serialize

    with tempfile.TemporaryDirectory() as tmp:
        sys.path.insert(0, str(HERE.parent / "examples" / "shop"))
        from shop.orders import Orders

        import lumi
        from lumi.codegen import get_generator
        from lumi.codegen.base import GenerateRequest

        files = get_generator("thrift").generate(GenerateRequest([lumi.interface(Orders)]))
        idl = Path(tmp) / "orders.thrift"
        idl.write_text(files["orders.thrift"])
        t2 = thriftpy2.load(str(idl), module_name="orders_bench_thrift")
        subprocess.run(["thrift", "--gen", "py", "-out", tmp, str(idl)], check=True)
        # the generated package is named like the namespace ("lumi.orders"): load it by path
        spec = importlib.util.spec_from_file_location(
            "apache_orders_ttypes", Path(tmp) / "lumi" / "orders" / "ttypes.py"
        )
        assert spec is not None and spec.loader is not None
        ttypes = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(ttypes)
    from thrift.protocol.TBinaryProtocol import TBinaryProtocolAccelerated
    from thrift.protocol.TCompactProtocol import TCompactProtocolAccelerated
    from thrift.transport.TTransport import TMemoryBuffer

    lines = [t2.OrderLine(qty=i + 1, sku=f"sku{i}") for i in range(5)]
    order2 = t2.Order(customer="ada", id="abc123", lines=lines, placed_at="x", total_cents=1234)
    a_lines = [ttypes.OrderLine(qty=i + 1, sku=f"sku{i}") for i in range(5)]
    order1 = ttypes.Order(customer="ada", id="abc123", lines=a_lines, placed_at="x", total_cents=1)

    def apache_round(protocol: Any) -> Any:
        buffer = TMemoryBuffer()
        order1.write(protocol(buffer))
        out = ttypes.Order()
        out.read(protocol(TMemoryBuffer(buffer.getvalue())))
        return out

    n = 10000

    def best(fn: Any) -> float:
        return min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e6

    binary, compact = TCyBinaryProtocolFactory(), TCompactProtocolFactory()
    return {
        "thriftpy2_binary_roundtrip_us": best(
            lambda: deserialize(t2.Order(), serialize(order2, binary), binary)
        ),
        "thriftpy2_compact_roundtrip_us": best(
            lambda: deserialize(t2.Order(), serialize(order2, compact), compact)
        ),
        "apache_binary_roundtrip_us": best(lambda: apache_round(TBinaryProtocolAccelerated)),
        "apache_compact_roundtrip_us": best(lambda: apache_round(TCompactProtocolAccelerated)),
    }


# -- main --------------------------------------------------------------------------------------


def run(duration: float, rounds: int, concurrency: int, only: str | None = None) -> dict[str, Any]:
    pairs = [pair for pair in PAIRS if only is None or only in pair[0]]
    # grpc as Lumi's transport imports it, from the first round on: one load generator for all
    import lumi.transports.grpc  # noqa: F401

    with tempfile.TemporaryDirectory() as tmp:
        gen = Path(tmp)
        generate(gen)
        kinds = list(dict.fromkeys(k for pair in pairs for k in pair))
        figures: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
        for round_no in range(rounds):
            # alternate the order: on a noisy machine neither side always goes first
            for kind in kinds if round_no % 2 == 0 else kinds[::-1]:
                figures[kind].append(measure(kind, gen, duration, concurrency))
    medians = {
        kind: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        for kind, runs in figures.items()
    }
    ratios = {}
    for lumi_kind, raw_kind in pairs:
        lumi_m, raw_m = medians[lumi_kind], medians[raw_kind]
        ratios[f"{lumi_kind} vs {raw_kind}"] = {
            "throughput_vs_raw": lumi_m["rps"] / raw_m["rps"],
            "p99_vs_raw": lumi_m["p99_ms"] / raw_m["p99_ms"],
            "cpu_per_call_vs_raw": lumi_m["server_cpu_us_per_call"]
            / raw_m["server_cpu_us_per_call"],
        }
    return {"medians": medians, "ratios": ratios, "codec": codecs()}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--codec-only", action="store_true", help="only the codec figures")
    parser.add_argument("--only", choices=["grpc", "thrift"], help="only this wire's contestants")
    args = parser.parse_args()
    if args.codec_only:
        for key, value in codecs().items():
            print(f"  codec {key:34s} {value:7.2f} µs")
        return
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {int(LOAD_CPU)})
    result = run(args.duration, args.rounds, args.concurrency, args.only)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for kind, m in result["medians"].items():
        print(
            f"{kind:19s} {m['rps']:7.0f} calls/s  p50 {m['p50_ms']:6.2f} ms  "
            f"p99 {m['p99_ms']:6.2f} ms  server CPU {m['server_cpu_us_per_call']:6.1f} µs/call"
        )
    for kind, r in result["ratios"].items():
        print(
            f"{kind:34s}: throughput {r['throughput_vs_raw']:.2f}x, "
            f"p99 {r['p99_vs_raw']:.2f}x, server CPU/call {r['cpu_per_call_vs_raw']:.2f}x"
        )
    for key, value in result["codec"].items():
        print(f"  codec {key:34s} {value:7.2f} µs")


if __name__ == "__main__":
    main()
