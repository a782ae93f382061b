"""``lumi run examples/shop``: how long until it says "running" (five replicas, started at
once; Catalog and Mailer serve first, then Inventory, then Orders), what an idle replica costs
in memory, and what each large import costs.

Each round starts a private copy of the shop (``lumi run``, dashboard on a free port; bytecode
cached, no coverage), times each replica's first "serving on" line and the "is running" banner
from the moment the command starts, waits until every replica is idle (ready, no call), reads
each replica's memory from ``/proc`` — RSS, and USS (its private pages: what one more replica
really adds; RSS also counts the shared libraries every Python process maps) — then stops it.
``--compare SRC`` runs the same rounds from another source tree (``PYTHONPATH=SRC``, e.g. the
main branch's) interleaved with this one, so both see the same machine. The import table runs
in fresh interpreters: RSS added by importing each module alone, after ``python`` itself.

The replicas fork from the process runtime's template (``lumi.runtimes.zygote``): its RSS is
reported once, beside the supervisor's.

Run: ``python bench/replica_bench.py [--rounds 5] [--compare SRC] [--json]``.
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
# The replica's large imports, each measured alone (its own dependencies included).
IMPORTS = ["asyncio", "uvloop", "pydantic", "structlog", "lumi.runtime_services.observability.logs",
           "opentelemetry.sdk.trace", "prometheus_client", "httptools", "sqlite3", "lumi.config",
           "lumi.transports.http", "lumi.runtimes.replica", "lumi.runtimes.serve"]  # fmt: skip
_PROBE = """
import sys
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS'):
            return int(line.split()[1]) / 1024
before = rss(); count = len(sys.modules)
import {module}
print(rss() - before, len(sys.modules) - count)
"""


def environment(src: Path | None = None) -> dict[str, str]:
    skip = ("COVERAGE_", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    env["NO_COLOR"] = "1"
    if src is not None:
        env["PYTHONPATH"] = str(src)
    return env


def memory(pid: int) -> tuple[float, float]:
    """RSS and USS (private clean + dirty) of ``pid``, MiB."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, value = line.partition(":")
        fields[name] = int(value.split()[0])
    uss = fields["Private_Clean"] + fields["Private_Dirty"]
    return fields["Rss"] / 1024, uss / 1024


def one_run(app: Path, env: dict[str, str]) -> dict[str, object]:
    """Start the shop, time its start, measure its idle replicas, stop it."""
    shutil.rmtree(app / ".lumi", ignore_errors=True)
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "lumi.cli.main", "run", str(app),
                             "--dashboard-port", "0"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    assert proc.stdout is not None
    serving: dict[str, float] = {}
    running = None
    deadline = time.monotonic() + 120
    seen: list[str] = []
    for line in proc.stdout:
        seen = [*seen[-19:], line]
        now = time.perf_counter() - started
        if " serving on " in line:
            serving.setdefault(line.split("|", 1)[0].strip(), now)
        if "is running; Ctrl-C stops it" in line:
            running = now
            break
        if time.monotonic() > deadline:
            break
    if running is None:
        proc.kill()
        raise RuntimeError("the shop did not start:\n" + "".join(seen))
    registry = json.loads((app / ".lumi" / "registry.json").read_text())
    pids = [r["pid"] for s in registry["services"].values() for r in s["replicas"]]
    # idle: every replica ready and none has served a call; give start-up garbage a moment
    time.sleep(1.0)
    replicas = [memory(pid) for pid in pids]
    supervisor = memory(proc.pid)
    parents = {
        int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) for pid in pids
    }
    template = sum(memory(p)[0] for p in parents - {proc.pid})  # the zygote, if they fork
    proc.send_signal(signal.SIGINT)
    for _ in proc.stdout:  # drain, so the stop is not blocked on a full pipe
        pass
    proc.wait(timeout=60)
    return {
        "running_s": running,
        "serving_s": dict(sorted(serving.items(), key=lambda kv: kv[1])),
        "replica_rss": [rss for rss, _ in replicas],
        "replica_uss": [uss for _, uss in replicas],
        "supervisor_rss": supervisor[0],
        "template_rss": template,
    }


def import_costs(env: dict[str, str]) -> dict[str, tuple[float, int]]:
    costs = {}
    for module in IMPORTS:
        out = subprocess.run([sys.executable, "-c", _PROBE.format(module=module)], env=env,
                             capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
        mib, count = out.stdout.split()
        costs[module] = (round(float(mib), 1), int(count))
    return costs


def floor(env: dict[str, str]) -> dict[str, float]:
    """Seconds of ``python -c pass`` and of a bare replica's imports, on the machine as it is
    now: what the start figure is to be read against; and the RSS of ``python`` itself here
    (what every replica's RSS starts from: it counts this machine's ``site`` and ``.pth``
    files too)."""
    times = {}
    for name, code in (("python -c pass", "pass"), ("import lumi.runtimes.serve", _SERVE)):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
        times[name] = time.perf_counter() - started
    out = subprocess.run([sys.executable, "-c", _PYTHON_RSS], env=env, capture_output=True,
                         text=True, check=True, timeout=120)  # fmt: skip
    times["python_rss"] = float(out.stdout)
    return times


_PYTHON_RSS = """
for line in open('/proc/self/status'):
    if line.startswith('VmRSS'):
        print(int(line.split()[1]) / 1024)
"""


_SERVE = "import lumi.runtimes.serve"


def summary(runs: list[dict[str, object]]) -> dict[str, object]:
    def med(key: str) -> float:
        return round(statistics.median(float(r[key]) for r in runs), 2)  # type: ignore[arg-type]

    def med_all(key: str) -> float:
        values = [v for r in runs for v in r[key]]  # type: ignore[attr-defined]
        return round(statistics.median(values), 1)

    return {
        "running_s": med("running_s"),
        "python_s": med("python_s"),
        "serve_import_s": med("serve_import_s"),
        "replica_rss_mib": med_all("replica_rss"),
        "replica_uss_mib": med_all("replica_uss"),
        "python_rss_mib": round(med("python_rss"), 1),
        "supervisor_rss_mib": round(statistics.median(float(r["supervisor_rss"]) for r in runs), 1),  # type: ignore[arg-type]
        "template_rss_mib": round(statistics.median(float(r["template_rss"]) for r in runs), 1),  # type: ignore[arg-type]
        "last_round_serving_s": {k: round(v, 2) for k, v in runs[-1]["serving_s"].items()},  # type: ignore[attr-defined]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--compare", type=Path, help="Also run the shop from this source tree.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    trees = {"this tree": environment()}
    if args.compare:
        trees[f"compare ({args.compare})"] = environment(args.compare.resolve())
    runs: dict[str, list[dict[str, object]]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory(prefix="lumi-replica-bench-") as tmp:
        app = Path(tmp) / "shop"
        shutil.copytree(ROOT / "examples" / "shop", app,
                        ignore=shutil.ignore_patterns("__pycache__", ".lumi"))  # fmt: skip
        for env in trees.values():  # warm-up: bytecode and page cache
            one_run(app, env)
        for _ in range(args.rounds):
            for name, env in trees.items():
                row = one_run(app, env)
                floors = floor(env)
                row["python_s"] = floors["python -c pass"]
                row["serve_import_s"] = floors["import lumi.runtimes.serve"]
                row["python_rss"] = floors["python_rss"]
                runs[name].append(row)
    results = {name: summary(rows) for name, rows in runs.items()}
    imports = {name: import_costs(env) for name, env in trees.items()}
    load = os.getloadavg()[0]
    if args.json:
        print(json.dumps({"rounds": args.rounds, "load": load, "results": results,
                          "imports": imports}))  # fmt: skip
        return
    print(f"{args.rounds} rounds, load average {load:.1f} at the end")
    for name, row in results.items():
        print(f"\n{name}: running after {row['running_s']} s (median; on this machine now "
              f"python -c pass takes {row['python_s']} s, importing lumi.runtimes.serve "
              f"{row['serve_import_s']} s)")  # fmt: skip
        print(f"  idle replica "
              f"RSS {row['replica_rss_mib']} MiB, USS {row['replica_uss_mib']} MiB; "
              f"supervisor RSS {row['supervisor_rss_mib']} MiB; "
              f"python -c pass alone: RSS {row['python_rss_mib']} MiB")  # fmt: skip
        if row["template_rss_mib"]:
            print(f"  the template the replicas fork from: RSS {row['template_rss_mib']} MiB")
        print("  last round, first 'serving on' per replica (s):",
              ", ".join(f"{k} {v}" for k, v in row["last_round_serving_s"].items()))  # type: ignore[attr-defined]  # fmt: skip
    print(f"\n{'import (alone, after python)':42} " + " ".join(f"{n[:18]:>18}" for n in imports))
    for module in IMPORTS:
        cells = " ".join(f"{imports[n][module][0]:9.1f} MiB {imports[n][module][1]:4d}m"
                         for n in imports)  # fmt: skip
        print(f"{module:42} {cells}")


if __name__ == "__main__":
    main()
