"""Profile the calling replica of the two-hop path: ``lumi run`` of bench/hop (Front → Back),
wrk on Front.relay with 32 connections, py-spy sampling Front.

Writes ``<out>.svg`` (a flame graph) and ``<out>.txt`` (where Front's busy time goes: the
server side, the client side, the event loop, plus the top functions by own time).

Run: ``python bench/hop_profile.py [--seconds 15] [--out bench/profiles/hop_front]``
(needs ``py-spy``; ``pip install py-spy``).
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hop_bench import lumi_app
from http_bench import HERE as HTTP_HERE
from http_bench import LOAD_CPU, pinned

# Where a sample of Front's main thread is, by the first matching frame (innermost first).
# The aiohttp names are those of the channel before Lumi had its own client.
BUCKETS = (
    (
        "client: response parsing",
        ("ClientConnection.data_received", "ResponseHandler.data_received"),
    ),
    ("client: socket write of the request", ("ClientConnection.send", "StreamWriter._writelines")),
    ("client: pipeline (client, observer, retry, balancer, channel)", ("_Method.__call__",)),
    ("server: request parsing", ("Connection.data_received",)),
    ("server: dispatch, handler, response", ("Connection._work",)),
)


def record(pid: int, seconds: int, fmt: str, out: Path) -> None:
    cmd = ["py-spy", "record", "-p", str(pid), "-d", str(seconds), "-r", "250"]
    subprocess.run([*cmd, "-f", fmt, "-o", str(out), "--nonblocking"], check=True)


def summarize(raw: Path) -> str:
    """Classify the main thread's samples. A sample with no Python frame below the loop is
    the loop's own C code: epoll, socket reads, callbacks (and waiting, which py-spy cannot
    always tell apart)."""
    buckets: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    busy = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = [re.sub(r" \(.*", "", f) for f in stack.split(";")]
        if not any(f.startswith("Runner.run") for f in frames):
            continue  # another thread (span export)
        n = int(count)
        busy += n
        own[frames[-1]] += n
        for name, markers in BUCKETS:
            if any(f.startswith(markers) for f in frames):
                buckets[name] += n
                break
        else:
            loop_only = frames[-1].startswith("Runner.run")
            buckets["event loop (C: epoll, reads, wakeups)" if loop_only else "other"] += n
    lines = [f"Front's main thread: {busy} samples (py-spy, 250 Hz, wall clock)", ""]
    lines += [f"{100 * n / busy:5.1f}%  {name}" for name, n in buckets.most_common()]
    lines += ["", "top functions by own time (share of busy samples):"]
    lines += [f"{100 * n / busy:5.1f}%  {name}" for name, n in own.most_common(25)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path("bench/profiles/hop_front"))
    args = parser.parse_args()
    for tool in ("py-spy", "wrk"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with lumi_app() as (endpoints, pids), tempfile.TemporaryDirectory() as tmp:
        front = pids["Front"]
        url = f"{endpoints['Front']}/Front/relay"
        load = [*pinned(LOAD_CPU), "wrk", "-t1", "-c32", f"-d{2 * args.seconds + 6}s"]
        wrk = subprocess.Popen(
            [*load, "-s", str(HTTP_HERE / "post.lua"), url], stdout=subprocess.DEVNULL
        )
        try:
            raw = Path(tmp) / "front.txt"
            record(front, args.seconds, "raw", raw)
            record(front, args.seconds, "flamegraph", args.out.with_suffix(".svg"))
        finally:
            wrk.terminate()
            wrk.wait()
        text = summarize(raw)
    args.out.with_suffix(".txt").write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
