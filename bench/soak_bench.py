"""Soak: a minute of mixed good and hostile traffic at one replica (issue 10).

One ``lumi run`` replica (bench/soak, a small Store) is driven by two processes:

* **good** — 4 keep-alive clients, each making a ``put`` or ``get`` every 10 ms (400 calls/s),
  recording every call's latency and outcome;
* **hostile** — cheap requests that used to stall, bloat or mislead a replica, each kind at a
  steady rate: invalid 100 KB bodies, 5,000 unknown arguments, floods of unknown service and
  method names, endless headers, a Content-Length of 100 MB with ``Expect: 100-continue``,
  100 slowloris connections, bad metadata (NaN deadlines, 9 KB correlation ids), NaN and
  "5"-for-an-integer bodies, garbage after a valid pipelined request, clients pipelining
  requests for 200 KB answers without ever reading them, idempotency keys reused with other
  arguments, and deadlines 1 ms away.

Bodies are kept small: a body costs the event loop the time to parse it (about 10 ms a MB,
invalid or not — that is the fix of item 1), and one replica is one event loop, so a steady
stream of multi-MB bodies shows up in the good calls' p99 whatever they contain.

Rounds alternate: quiet (good traffic only), then hostile (good + hostile), six pairs of 10 s by
default — a minute of hostile traffic — so that the machine's own noise falls on both alike.
Reported: the median over rounds of the good calls' p50 and p99, their errors, the hostile
requests sent by kind, and the replica's RSS (start, end, high water). Goal: the good calls'
p99 under hostile traffic within 2x of the quiet rounds', no good call failing, memory flat.

Run: ``python bench/soak_bench.py [--rounds 6] [--seconds 10] [--only KIND] [--json]``. Not part
of CI (tests/integration/test_bench_smoke.py runs it for a few seconds so it cannot rot).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import multiprocessing
import os
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent / "soak"
GOOD_CLIENTS = 4
GOOD_INTERVAL = 0.010  # seconds between one good client's calls


# ------------------------------------------------------------------------------ the replica


@contextlib.contextmanager
def replica() -> Iterator[tuple[str, int]]:
    """``lumi run`` of bench/soak in a temporary folder; yields (endpoint, replica pid)."""
    with tempfile.TemporaryDirectory() as tmp:
        app = Path(tmp) / "soak"
        shutil.copytree(HERE, app, ignore=shutil.ignore_patterns(".lumi", "__pycache__"))
        proc = subprocess.Popen(
            [sys.executable, "-m", "lumi.cli.main", "run", str(app)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "NO_COLOR": "1"},
        )
        try:
            registry = app / ".lumi" / "registry.json"
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(OSError, ValueError, KeyError, IndexError):
                    replica = json.loads(registry.read_text())["services"]["Store"]["replicas"][0]
                    if replica["state"] == "ready":
                        break
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the soak replica did not start")
                time.sleep(0.1)
            yield replica["endpoints"][0], int(replica["pid"])
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def memory_mb(pid: int, field: str = "VmRSS") -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return 0.0


def split(endpoint: str) -> tuple[str, int]:
    host, port = endpoint.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


# --------------------------------------------------------------------------- good traffic


def good(endpoint: str, seconds: float, out: Any) -> None:
    """Run the good clients for ``seconds``; send (latencies, errors) to ``out``."""
    host, port = split(endpoint)
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=10)
        headers = {"content-type": "application/json"}
        start = time.monotonic()
        end = start + seconds
        for i in itertools.count():
            at = start + i * GOOD_INTERVAL
            now = time.monotonic()
            if at > end:
                break
            if at > now:
                time.sleep(at - now)
            if i % 2:
                path, body = "/Store/get", {"key": f"k{n}"}
            else:
                path, body = "/Store/put", {"key": f"k{n}", "value": i}
            began = time.perf_counter()
            try:
                conn.request("POST", path, json.dumps(body), headers)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
                outcome = "" if ok else str(response.status)
            except (OSError, http.client.HTTPException) as exc:
                outcome = type(exc).__name__
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=10)
            took = time.perf_counter() - began
            with lock:
                latencies.append(took)
                if outcome:
                    errors.append(outcome)
        conn.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(GOOD_CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.send((latencies, errors))


# ------------------------------------------------------------------------- hostile traffic


def raw(host: str, port: int, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def post(path: str, body: bytes, *headers: str) -> bytes:
    extra = "".join(f"{h}\r\n" for h in headers)
    return (
        f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


def drain(sock: socket.socket, until: float) -> None:
    """Read (and drop) what the server sends until it closes or ``until``."""
    with contextlib.suppress(OSError):
        while time.monotonic() < until:
            ready, _, _ = select.select([sock], [], [], max(0.0, until - time.monotonic()))
            if not ready or not sock.recv(65536):
                return


def responses(sock: socket.socket, count: int, timeout: float = 5.0) -> None:
    """Read ``count`` whole responses (content-length framed) off ``sock``."""
    buffer = b""
    sock.settimeout(timeout)
    for _ in range(count):
        while b"\r\n\r\n" not in buffer:
            data = sock.recv(65536)
            if not data:
                return
            buffer += data
        head, buffer = buffer.split(b"\r\n\r\n", 1)
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        while len(buffer) < length:
            data = sock.recv(65536)
            if not data:
                return
            buffer += data
        buffer = buffer[length:]


class Hostile:
    """Every kind of hostile request, each on its own thread at its own rate."""

    def __init__(self, endpoint: str, stop: Event, only: str = "") -> None:
        self.host, self.port = split(endpoint)
        self.stop = stop
        self.sent: dict[str, int] = {}
        self.names = itertools.count()
        invalid = json.dumps({"values": ["x"] * 20_000}).encode()
        extras = json.dumps({"values": [], **{f"k{i}": 0 for i in range(5_000)}}).encode()
        self.kinds: dict[str, tuple[float, Callable[[], None]]] = {
            "invalid 100 KB bodies": (10, lambda: self.keep("/Store/total", invalid)),
            "5,000 unknown arguments": (5, lambda: self.keep("/Store/total", extras)),
            "unknown names (x100 pipelined)": (2, self.unknown_names),
            "endless headers": (5, self.endless_header),
            "100 MB Content-Length + Expect": (10, self.huge_length),
            "bad metadata": (20, self.bad_metadata),
            "NaN / '5' bodies": (20, self.bad_bodies),
            "garbage after a valid request": (20, self.garbage),
            "non-reading pipeliners": (0.5, self.non_reader),
            "idempotency key reuse": (20, self.key_reuse),
            "deadlines 1 ms away": (20, self.short_deadline),
        }
        self._keep: dict[str, socket.socket] = {}
        self._turn = itertools.count()
        self.only = only

    def wanted(self, name: str) -> bool:
        return not self.only or self.only in name

    def run(self) -> dict[str, int]:
        threads = [threading.Thread(target=self.slowloris)] if self.wanted("slowloris") else []
        threads += [
            threading.Thread(target=self.paced, args=(name, rate, action))
            for name, (rate, action) in self.kinds.items()
            if self.wanted(name)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return self.sent

    def paced(self, name: str, rate: float, action: Callable[[], None]) -> None:
        interval = 1.0 / rate
        start = time.monotonic()
        for i in itertools.count():
            if self.stop.is_set():
                return
            at = start + i * interval
            if at > time.monotonic():
                self.stop.wait(at - time.monotonic())
            try:
                action()
            except OSError:
                self._keep.pop(threading.current_thread().name, None)
            self.sent[name] = self.sent.get(name, 0) + 1

    def keep(self, path: str, body: bytes, *headers: str) -> None:
        """One request on this thread's keep-alive connection; read its answer."""
        key = threading.current_thread().name
        sock = self._keep.get(key)
        if sock is None:
            sock = self._keep[key] = raw(self.host, self.port)
        sock.sendall(post(path, body, *headers))
        responses(sock, 1)

    def unknown_names(self) -> None:
        with raw(self.host, self.port) as sock:
            batch = [next(self.names) for _ in range(100)]
            sock.sendall(b"".join(post(f"/Bogus{n}/m{n}", b"{}") for n in batch))
            responses(sock, 100)

    def endless_header(self) -> None:
        with raw(self.host, self.port) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: ")
            chunk = b"a" * 16384
            for _ in range(64):  # at most 1 MB, until the server answers
                if select.select([sock], [], [], 0)[0]:
                    break
                sock.sendall(chunk)
            drain(sock, time.monotonic() + 1)

    def huge_length(self) -> None:
        with raw(self.host, self.port) as sock:
            sock.sendall(
                b"POST /Store/total HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                b"content-length: 100000000\r\nexpect: 100-continue\r\n\r\n"
            )
            responses(sock, 1)

    def bad_metadata(self) -> None:
        headers = [
            "x-lumi-deadline: nan",
            "x-lumi-deadline: 1e400",
            "x-correlation-id: " + "c" * 9000,
            "idempotency-key: " + "k" * 400,
        ]
        self.keep("/Store/get", b'{"key": "k"}', headers[next(self._turn) % len(headers)])

    def bad_bodies(self) -> None:
        bodies = [b'{"key": "n", "value": NaN}', b'{"key": "n", "value": "5"}', b'{"key": 1}']
        self.keep("/Store/put", bodies[next(self._turn) % len(bodies)])

    def garbage(self) -> None:
        with raw(self.host, self.port) as sock:
            sock.sendall(post("/Store/get", b'{"key": "k"}') + b"GARBAGE \x00 NONSENSE\r\n\r\n")
            drain(sock, time.monotonic() + 2)

    def non_reader(self) -> None:
        """Pipeline requests for 200 KB answers, never read, hold the connection 10 s."""
        with raw(self.host, self.port, timeout=1) as sock:
            one = post("/Store/pad", b'{"size": 200000}', "x-filler: " + "f" * 8192)
            with contextlib.suppress(TimeoutError):
                for _ in range(300):
                    sock.sendall(one)
            self.stop.wait(10)

    def key_reuse(self) -> None:
        value = next(self._turn)
        self.keep("/Store/put", b'{"key": "r", "value": %d}' % value, "idempotency-key: reused")

    def short_deadline(self) -> None:
        soon = int(time.time() * 1000) + 1
        self.keep("/Store/get", b'{"key": "k"}', f"x-lumi-deadline: {soon}")

    def slowloris(self) -> None:
        """Hold 100 connections that each send one header byte a second."""
        name = "slowloris (100 connections)"
        socks: list[socket.socket | None] = [None] * 100
        while not self.stop.is_set():
            for i, sock in enumerate(socks):
                try:
                    if sock is None:
                        sock = socks[i] = raw(self.host, self.port)
                        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
                        self.sent[name] = self.sent.get(name, 0) + 1
                    sock.sendall(b"x")
                except OSError:
                    if sock is not None:
                        sock.close()
                    socks[i] = None
            self.stop.wait(1.0)
        for sock in socks:
            if sock is not None:
                sock.close()


def hostile(endpoint: str, stop: Event, out: Any, only: str) -> None:
    out.send(Hostile(endpoint, stop, only).run())


# ---------------------------------------------------------------------------------- phases


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def phase(
    endpoint: str, pid: int, seconds: float, *, attack: bool, only: str = ""
) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    good_out, good_in = ctx.Pipe(duplex=False)
    clients = ctx.Process(target=good, args=(endpoint, seconds, good_in))
    stop = ctx.Event()
    hostile_out, hostile_in = ctx.Pipe(duplex=False)
    attacker = ctx.Process(target=hostile, args=(endpoint, stop, hostile_in, only))
    if attack:
        attacker.start()
        time.sleep(1.0)  # let the attack reach its pace first
    clients.start()
    began = time.monotonic()
    peak = 0.0
    while not good_out.poll(0.2):  # (receive before joining: the result may fill the pipe)
        peak = max(peak, memory_mb(pid))
    latencies, errors = good_out.recv()
    clients.join()
    took = time.monotonic() - began
    sent: dict[str, int] = {}
    if attack:
        stop.set()
        sent = hostile_out.recv()
        attacker.join()
    return {
        "seconds": round(took, 1),
        "calls": len(latencies),
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "max_ms": round(max(latencies) * 1000, 2) if latencies else None,
        "peak_rss_mb": round(peak, 1),
        "hostile_sent": sent,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="quiet/hostile round pairs")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of each round")
    parser.add_argument("--only", default="", help="only the hostile kinds whose name has this")
    parser.add_argument("--json", action="store_true", help="print one JSON line at the end")
    args = parser.parse_args()
    quiet: list[dict[str, Any]] = []
    attacked: list[dict[str, Any]] = []
    with replica() as (endpoint, pid):
        start_rss = memory_mb(pid)
        for _ in range(args.rounds):  # alternating, so machine noise hits both alike
            quiet.append(phase(endpoint, pid, args.seconds, attack=False))
            attacked.append(phase(endpoint, pid, args.seconds, attack=True, only=args.only))
        high_water = memory_mb(pid, "VmHWM")
        end_rss = memory_mb(pid)
    quiet_p99 = statistics.median(p["p99_ms"] for p in quiet)
    hostile_p99 = statistics.median(p["p99_ms"] for p in attacked)
    sent: dict[str, int] = {}
    for p in attacked:
        for kind, count in p["hostile_sent"].items():
            sent[kind] = sent.get(kind, 0) + count
    result = {
        "rounds": args.rounds,
        "seconds": args.seconds,
        "quiet_p50_ms": statistics.median(p["p50_ms"] for p in quiet),
        "quiet_p99_ms": quiet_p99,
        "hostile_p50_ms": statistics.median(p["p50_ms"] for p in attacked),
        "hostile_p99_ms": hostile_p99,
        "p99_ratio": round(hostile_p99 / quiet_p99, 2),
        "good_calls": sum(p["calls"] for p in quiet + attacked),
        "good_errors": sum(p["errors"] for p in quiet + attacked),
        "hostile_sent": sent,
        "rss_start_mb": round(start_rss, 1),
        "rss_end_mb": round(end_rss, 1),
        "rss_high_water_mb": round(high_water, 1),
        "rounds_detail": {"quiet": quiet, "hostile": attacked},
    }
    if args.json:
        print(json.dumps(result))
        return
    for name, rounds in (("quiet", quiet), ("hostile", attacked)):
        p99s = ", ".join(f"{p['p99_ms']:.1f}" for p in rounds)
        print(f"{name:8} p99 per round (ms): {p99s}")
    print(
        f"good calls: {result['good_calls']}, failed: {result['good_errors']}; median p50 "
        f"{result['quiet_p50_ms']} ms quiet, {result['hostile_p50_ms']} ms under attack"
    )
    for kind, count in sorted(sent.items()):
        print(f"  hostile: {count:7} {kind}")
    print(
        f"good p99: {quiet_p99:.1f} ms quiet, {hostile_p99:.1f} ms under attack = "
        f"{result['p99_ratio']}x (goal <= 2x); replica RSS {result['rss_start_mb']} MB at start, "
        f"{result['rss_end_mb']} MB at the end, {result['rss_high_water_mb']} MB high water"
    )


if __name__ == "__main__":
    main()
