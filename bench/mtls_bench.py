"""mTLS benchmark: the cost of mutual TLS on Lumi's HTTP transport, plaintext vs mTLS side by
side in one run.

Two ``lumi run`` of the same app (bench/mtls: Front, Back) serve at once, their replicas pinned
to CPU 0: one with mTLS (the default: every replica's certificate from the app's CA, each hop
authenticated), one with ``--env plain`` (``security.mtls = false``). The load generator (CPU 1)
is the same for both: ``--concurrency`` keep-alive connections (over TLS with the operator's
certificate for the mTLS app) sending pre-built requests back to back, to

* one hop:  ``Front.echo`` — the caller's connection to Front is the only TLS hop;
* two hops: ``Front.relay`` — Front calls Back over its own pooled mTLS connections.

Rounds alternate which app goes first; figures are medians over rounds. Besides calls per
second and latency percentiles it reports the replicas' CPU time per call (from /proc), which
stays meaningful when the load generator is the bottleneck. ``handshakes`` times new
connections (full handshakes, client and server in one process) for EC P-256 and Ed25519 keys.

Run: ``python bench/mtls_bench.py [--duration 5] [--rounds 3] [--concurrency 16] [--json]``.
Goal (issue 15): at most 10% fewer calls per second with mTLS, and at most +0.1 ms p90 per hop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
APP = HERE / "mtls"
SERVER_CPU, LOAD_CPU = "0", "1"
BODY = b'{"text": "hello world", "n": 42}'
PATHS = {"one hop": "/Front/echo", "two hops": "/Front/relay"}


def pinned(cpu: str) -> list[str]:
    many = (os.cpu_count() or 1) > 1
    return ["taskset", "-c", cpu] if shutil.which("taskset") and many else []


class Run:
    """One ``lumi run`` of the bench app in its own folder."""

    def __init__(self, name: str, folder: Path, env: str | None) -> None:
        self.name = name
        self.folder = folder
        shutil.copytree(APP, folder, ignore=shutil.ignore_patterns(".lumi", "__pycache__"))
        args = [sys.executable, "-m", "lumi.cli.main", "run", str(folder), "--no-dashboard"]
        if env:
            args += ["--env", env]
        self.proc = subprocess.Popen(
            [*pinned(SERVER_CPU), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )

    def registry(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.folder / ".lumi" / "registry.json").read_text())
            return data
        except (OSError, ValueError):
            return {}

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"lumi run ({self.name}) exited with {self.proc.returncode}")
            services = self.registry().get("services", {})
            states = [r["state"] for s in services.values() for r in s["replicas"]]
            if len(services) == 2 and states and all(s == "ready" for s in states):
                return
            time.sleep(0.1)
        raise RuntimeError(f"lumi run ({self.name}) was not ready within {timeout}s")

    @property
    def mtls(self) -> bool:
        return bool(self.registry().get("mtls"))

    def address(self) -> tuple[str, int]:
        url = self.registry()["services"]["Front"]["endpoints"][0]
        host, port = url.split("://", 1)[1].rsplit(":", 1)
        return host, int(port)

    def context(self) -> ssl.SSLContext | None:
        if not self.mtls:
            return None
        folder = self.folder / ".lumi" / "ca" / "certs" / "operator"
        context = ssl.create_default_context(cafile=str(folder / "ca.crt"))
        context.load_cert_chain(folder / "tls.crt", folder / "tls.key")
        return context

    def pids(self) -> list[int]:
        services = self.registry().get("services", {})
        return [r["pid"] for s in services.values() for r in s["replicas"] if r.get("pid")]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class _Caller(asyncio.Protocol):
    """One keep-alive connection sending ``request`` back to back: callbacks only (no streams),
    so the load generator's own cost stays small next to the replicas' (over TLS it uses the
    memory-BIO connection Lumi's channels use)."""

    def __init__(self, request: bytes, stop: float, latencies: list[float]) -> None:
        self.request, self.stop, self.latencies = request, stop, latencies
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.started = 0.0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        self.started = time.perf_counter()
        if self.started >= self.stop:
            self.transport.close()
            if not self.done.done():
                self.done.set_result(None)
            return
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end]
        if not head.startswith(b"HTTP/1.1 200"):
            self._fail(RuntimeError(f"{head[:60]!r}"))
            return
        length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
        if len(self.buffer) < end + 4 + length:
            return
        self.buffer = self.buffer[end + 4 + length :]
        self.latencies.append(time.perf_counter() - self.started)
        self._send()

    def _fail(self, exc: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self._fail(exc or ConnectionError("the server closed the connection"))


async def load(
    address: tuple[str, int], context: ssl.SSLContext | None, path: str, args: argparse.Namespace
) -> list[float]:
    """Latencies (seconds) of the calls answered during ``args.duration`` seconds."""
    from lumi.transports.tls_server import TlsClientConnection

    host, port = address
    head = (
        f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(BODY)}\r\n\r\n"
    ).encode()
    request = head + BODY
    latencies: list[float] = []
    stop = time.perf_counter() + args.duration
    loop = asyncio.get_running_loop()

    async def connection() -> None:
        caller = _Caller(request, stop, latencies)
        if context is None:
            await loop.create_connection(lambda: caller, host, port)
        else:
            tls = TlsClientConnection(context, caller, "front.mtlsbench")
            await loop.create_connection(lambda: tls, host, port)
            await tls.handshake
        await caller.done

    await asyncio.gather(*(connection() for _ in range(args.concurrency)))
    return latencies


def measure(run: Run, path: str, args: argparse.Namespace) -> dict[str, float]:
    import uvloop

    pids = run.pids()
    before = cpu_seconds(pids)
    latencies = uvloop.run(load(run.address(), run.context(), path, args))
    cpu = cpu_seconds(pids) - before
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

    return {
        "rps": len(latencies) / args.duration,
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "cpu_us_per_call": cpu / max(1, len(latencies)) * 1e6,
    }


def handshakes(count: int = 300) -> dict[str, float]:
    """Milliseconds per full mTLS handshake (client and server CPU, one process), by key type."""
    sys.path.insert(0, str(HERE.parent))
    from tests.tlskit import TlsKit

    from lumi.security.ca import CertificateAuthority
    from lumi.transports.tls_server import TlsConnection

    results = {}
    for key_type in ("ec", "ed25519"):
        with tempfile.TemporaryDirectory() as tmp:
            kit = TlsKit(Path(tmp))
            kit.ca = CertificateAuthority.create("bench", key_type=key_type)  # type: ignore[arg-type]
            server_ctx = kit.tls("Server").server_context()
            client_ctx = kit.tls("Client").client_context()

            async def run(
                server_ctx: ssl.SSLContext = server_ctx, client_ctx: Any = client_ctx
            ) -> float:
                loop = asyncio.get_running_loop()
                server = await loop.create_server(
                    lambda: TlsConnection(server_ctx, asyncio.Protocol()), "127.0.0.1", 0
                )
                port = server.sockets[0].getsockname()[1]
                started = time.perf_counter()
                for _ in range(count):
                    _, writer = await asyncio.open_connection(
                        "127.0.0.1", port, ssl=client_ctx, server_hostname="server.test"
                    )
                    writer.transport.abort()
                elapsed = time.perf_counter() - started
                server.close()
                return elapsed / count * 1000

            import uvloop

            results[key_type] = uvloop.run(run())
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if LOAD_CPU and pinned(LOAD_CPU):
        os.sched_setaffinity(0, {int(LOAD_CPU)})
    figures: dict[str, dict[str, list[dict[str, float]]]] = {
        name: {hop: [] for hop in PATHS} for name in ("plain", "mtls")
    }
    with tempfile.TemporaryDirectory(prefix="lumi-mtls-bench-") as tmp:
        runs = {"mtls": Run("mtls", Path(tmp) / "mtls", None),
                "plain": Run("plain", Path(tmp) / "plain", "plain")}  # fmt: skip
        try:
            for run in runs.values():
                run.wait_ready()
            assert runs["mtls"].mtls and not runs["plain"].mtls
            for run in runs.values():  # warm up both
                for path in PATHS.values():
                    measure(run, path, argparse.Namespace(duration=1.0, concurrency=4))
            for index in range(args.rounds):
                order = ["plain", "mtls"] if index % 2 == 0 else ["mtls", "plain"]
                for hop, path in PATHS.items():
                    for name in order:
                        figures[name][hop].append(measure(runs[name], path, args))
        finally:
            for run in runs.values():
                run.stop()
    result: dict[str, Any] = {"concurrency": args.concurrency, "duration": args.duration,
                              "rounds": args.rounds}  # fmt: skip
    for hop in PATHS:
        row: dict[str, float] = {}
        for name in ("plain", "mtls"):
            for key in ("rps", "p50_ms", "p90_ms", "p99_ms", "cpu_us_per_call"):
                row[f"{name}_{key}"] = round(
                    statistics.median(f[key] for f in figures[name][hop]), 3
                )
        hops = 2 if hop == "two hops" else 1
        row["rps_ratio"] = round(row["mtls_rps"] / row["plain_rps"], 3)
        row["p90_added_ms_per_hop"] = round((row["mtls_p90_ms"] - row["plain_p90_ms"]) / hops, 3)
        row["cpu_added_us_per_hop"] = round(
            (row["mtls_cpu_us_per_call"] - row["plain_cpu_us_per_call"]) / hops, 1
        )
        result[hop] = row
    result["handshake_ms"] = {k: round(v, 3) for k, v in handshakes().items()}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"mTLS vs plaintext, {args.concurrency} keep-alive connections, medians of {args.rounds}")
    for hop in PATHS:
        r = result[hop]
        print(
            f"  {hop:<8}  plain {r['plain_rps']:>8.0f}/s p90 {r['plain_p90_ms']:.3f} ms  "
            f"mtls {r['mtls_rps']:>8.0f}/s p90 {r['mtls_p90_ms']:.3f} ms  "
            f"ratio {r['rps_ratio']:.3f}  p90 +{r['p90_added_ms_per_hop']:.3f} ms/hop  "
            f"cpu +{r['cpu_added_us_per_hop']:.1f} us/hop"
        )
    shakes = result["handshake_ms"]
    print(f"  handshake (full mTLS, both sides): EC P-256 {shakes['ec']:.2f} ms, "
          f"Ed25519 {shakes['ed25519']:.2f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
