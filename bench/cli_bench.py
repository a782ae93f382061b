"""CLI start-up benchmark: ``lumi --help``, ``lumi call --help``, ``lumi ls`` and ``lumi call``
against ``python -c pass`` (the floor any Python CLI starts from) and the CLIs a user would
compare with (``fastapi --help``, ``uvicorn --help``), side by side in one run.

Every command runs as ``python -m ...`` in a fresh interpreter, so all pay the same launcher.
The example shop runs (``lumi run``, a private copy) so that ``ls`` shows its replicas and
``call`` has a service to call. Each round runs every command once, in an order that rotates
from round to round; each figure is the median wall time and peak RSS over the rounds (the
machine is noisy), and each ratio is to ``python -c pass``. ``--imports`` adds, per command,
what its imports cost (``python -X importtime``): the largest top-level imports, cumulative.

``--compare SRC`` adds every ``lumi`` command run from another source tree (``PYTHONPATH=SRC``),
e.g. the main branch's, to show a change's effect on the same machine.

Run: ``python bench/cli_bench.py [--rounds 15] [--imports] [--compare SRC] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LUMI = [sys.executable, "-m", "lumi.cli.main"]


FLOOR = "python -c pass"
PEERS = {"fastapi --help": "fastapi", "uvicorn --help": "uvicorn"}  # name: module run with -m


def commands(app: Path) -> dict[str, list[str]]:
    """Every contestant's argv, by the name it is reported under."""
    return {
        FLOOR: [sys.executable, "-c", "pass"],
        "lumi --help": [*LUMI, "--help"],
        "lumi call --help": [*LUMI, "call", "--help"],
        "lumi ls": [*LUMI, "ls", "--app", str(app)],
        "lumi call": [*LUMI, "call", "Catalog.product", "sku=apple", "--app", str(app)],
        **{name: [sys.executable, "-m", module, "--help"] for name, module in PEERS.items()},
    }


def environment() -> dict[str, str]:
    """This environment as a user's shell has it: bytecode is cached (a user's install writes
    ``__pycache__``; compiling every module on every start would dominate), no coverage."""
    skip = ("COVERAGE_", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    return {**env, "NO_COLOR": "1"}


def measure(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one run of ``argv``, which must succeed."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    error = proc.stderr.read().decode() if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {error}")
    return wall, usage.ru_maxrss / 1024


def top_imports(argv: list[str], env: dict[str, str], count: int = 8) -> list[tuple[str, float]]:
    """The ``count`` costliest top-level imports of ``argv`` (cumulative ms)."""
    out = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    found: list[tuple[str, float]] = []
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        if not name.startswith(" ") or name.startswith("  "):  # top level: one space of indent
            continue
        try:
            found.append((name.strip(), int(cumulative) / 1000))
        except ValueError:
            continue
    return sorted(found, key=lambda item: -item[1])[:count]


def start_shop(folder: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path]:
    """A private copy of the example shop, run until every replica is ready."""
    app = folder / "shop"
    shutil.copytree(ROOT / "examples" / "shop", app,
                    ignore=shutil.ignore_patterns("__pycache__", ".lumi"))  # fmt: skip
    proc = subprocess.Popen([*LUMI, "run", str(app), "--no-dashboard"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            registry = json.loads((app / ".lumi" / "registry.json").read_text())
            states = [r["state"] for s in registry["services"].values() for r in s["replicas"]]
            if states and all(state == "ready" for state in states):
                return proc, app
        except (OSError, ValueError, KeyError):
            pass
        if proc.poll() is not None:
            raise RuntimeError("lumi run exited")
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the shop did not get ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--imports", action="store_true", help="Also show import costs.")
    parser.add_argument("--json", action="store_true", help="One JSON line of results.")
    parser.add_argument("--compare", type=Path, help="Also time the lumi commands from SRC.")
    args = parser.parse_args()
    env = environment()
    envs: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="lumi-cli-bench-") as tmp:
        shop, app = start_shop(Path(tmp), env)
        try:
            table = commands(app)
            if args.compare:
                for name in ("lumi --help", "lumi call --help", "lumi ls", "lumi call"):
                    table[f"{name} (compare)"] = table[name]
                    envs[f"{name} (compare)"] = {**env, "PYTHONPATH": str(args.compare)}
            names = list(table)
            walls: dict[str, list[float]] = {name: [] for name in names}
            rss: dict[str, list[float]] = {name: [] for name in names}
            for name in names:  # one warm-up run each (page cache, bytecode)
                measure(table[name], envs.get(name, env))
            for index in range(args.rounds):
                shift = index % len(names)
                for name in names[shift:] + names[:shift]:
                    wall, peak = measure(table[name], envs.get(name, env))
                    walls[name].append(wall)
                    rss[name].append(peak)
            imports = (
                {n: top_imports(table[n], envs.get(n, env)) for n in names if n != FLOOR}
                if args.imports
                else {}
            )
        finally:
            shop.send_signal(signal.SIGINT)
            shop.wait(timeout=60)
    floor = statistics.median(walls[FLOOR])
    results = {
        name: {
            "wall_ms": round(statistics.median(walls[name]) * 1000, 1),
            "over_python_ms": round((statistics.median(walls[name]) - floor) * 1000, 1),
            "ratio": round(statistics.median(walls[name]) / floor, 2),
            "rss_mib": round(statistics.median(rss[name]), 1),
        }
        for name in names
    }
    lumi_help = statistics.median(walls["lumi --help"])
    versus = {peer: round(lumi_help / statistics.median(walls[peer]), 2) for peer in PEERS}
    if args.json:
        compare = str(args.compare or "")
        print(json.dumps({"rounds": args.rounds, "compare": compare, "results": results,
                          "lumi_help_vs": versus, "imports": imports}))  # fmt: skip
        return
    print(f"{'command':28} {'wall ms':>8} {'over python':>12} {'ratio':>6} {'RSS MiB':>8}")
    for name, row in results.items():
        print(f"{name:28} {row['wall_ms']:8.1f} {row['over_python_ms']:12.1f} "
              f"{row['ratio']:6.2f} {row['rss_mib']:8.1f}")  # fmt: skip
    print("lumi --help / " + ", ".join(f"{peer}: {ratio:.2f}" for peer, ratio in versus.items()))
    for name, rows in imports.items():
        print(f"\n{name}: largest imports (cumulative ms)")
        for module, ms in rows:
            print(f"  {module:40} {ms:8.1f}")


if __name__ == "__main__":
    main()
