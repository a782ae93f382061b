"""Rollback benchmark: how long a bad canary hurts, from its first failed call to the moment
callers stop seeing failures.

The example shop is deployed to a local environment (``lumi up``, ``lumi deploy``), a thread
calls ``Inventory.available`` (which calls Catalog) at a steady ``--rate``, and each round
deploys a Catalog whose ``product`` fails half its calls as a canary. The analysis rolls it
back; from the round's history record (timestamps of the control plane's own events) and the
caller's own clock, per round:

* ``detect_s``       first failed call → the analysis crossed the error-rate threshold
* ``traffic_off_s``  first failed call → the route table sends no call to the canary
* ``last_error_s``   first failed call → the last failed call callers saw
* ``stopped_s``      first failed call → the canary drained and stopped
* ``failed_calls``   calls that failed in the round

No peer runs here: Argo Rollouts and Flagger need a Kubernetes cluster, which this machine
cannot run, so the figures are absolute (medians over rounds, min and max beside them).
Run: ``python bench/rollback_bench.py [--rounds 5] [--rate 50] [--interval 0.25] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from tests.integration.shipping import lumi, shop_repo  # noqa: E402

from lumi.deploy.state import EnvironmentState  # noqa: E402

BROKEN = '        """One product by SKU; NOT_FOUND for an unknown SKU."""\n'
FAILING = (
    BROKEN + "        import random\n\n"
    "        if random.random() < 0.5:\n"
    '            raise RuntimeError("this version is broken")\n'
)


class Load:
    """Calls at a steady rate from a thread; each call's end time and status."""

    def __init__(self, url: str, rate: float) -> None:
        self.url = f"{url}/Inventory/available"
        self.period = 1.0 / rate
        self.calls: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=30) as http:
            due = time.monotonic()
            while not self._stop.is_set():
                try:
                    status = http.post(self.url, json={"sku": "apple"}).status_code
                except httpx.HTTPError:
                    status = 0
                self.calls.append((time.time(), status))
                due += self.period
                self._stop.wait(max(0.0, due - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def run(*args: str, app: Path, env: dict[str, str], check: int = 0) -> str:
    out = lumi(*args, cwd=app, env=env, timeout=600)
    if out.returncode != check:
        raise SystemExit(f"lumi {' '.join(args)} exited {out.returncode}:\n{out.stderr}")
    return str(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rate", type=float, default=50.0, help="calls per second")
    parser.add_argument("--interval", type=float, default=0.25, help="[deploy] interval")
    parser.add_argument("--min-requests", type=int, default=5, help="[deploy] min_requests")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="lumi-rollback-bench-"))
    app = shop_repo(folder / "src")
    with (app / "lumi.toml").open("a") as config:
        config.write(
            f"\n[env.bench.deploy]\nweights = [20, 100]\nbake = 60\ninterval = {args.interval}\n"
            f"min_requests = {args.min_requests}\np99_floor = 5.0\n"
            "\n[security]\nmtls = false\n"  # the load speaks plain HTTP
        )
    env = {"LUMI_REPOSITORY": str(folder / "repo"), "LUMI_DEPLOY_CACHE": str(folder / "cache")}
    run("build", app=app, env=env)
    run("publish", "-q", app=app, env=env)
    run("up", "bench", app=app, env=env)
    rounds: list[dict[str, float]] = []
    try:
        run("deploy", "bench", app=app, env=env)
        catalog = app / "shop" / "catalog.py"
        catalog.write_text(catalog.read_text().replace(BROKEN, FAILING))
        run("version", "Catalog", "patch", app=app, env=env)
        run("build", "Catalog", app=app, env=env)
        run("publish", "Catalog", "-q", app=app, env=env)
        state = EnvironmentState(app, "bench")
        registry = json.loads((state.app / ".lumi" / "registry.json").read_text())
        load = Load(registry["services"]["Inventory"]["endpoints"][0], args.rate)
        try:
            for _ in range(args.rounds):
                run("deploy", "bench", "Catalog@0.1.1", app=app, env=env, check=1)
                rounds.append(measure(state, load))
        finally:
            load.stop()
    finally:
        run("down", "bench", app=app, env=env)
    report(rounds, args)


def measure(state: EnvironmentState, load: Load) -> dict[str, float]:
    record = state.history()[-1]
    assert record.outcome == "rolled back", record
    started, finished = record.started, record.finished or time.time()
    failed = [t for t, status in load.calls if started <= t <= finished + 5 and status != 200]
    if not failed:
        raise SystemExit("the bad canary failed no call: raise --rate")

    def at(prefix: str) -> float:
        return next(e.at for e in record.events if e.message.startswith(prefix))

    first = failed[0]
    return {
        "detect_s": at("threshold crossed") - first,
        "traffic_off_s": at("calls to Catalog back on") - first,
        "last_error_s": failed[-1] - first,
        "stopped_s": at("canary of") - first,
        "failed_calls": float(len(failed)),
    }


def report(rounds: list[dict[str, float]], args: argparse.Namespace) -> None:
    figures = {
        key: {
            "median": statistics.median(r[key] for r in rounds),
            "min": min(r[key] for r in rounds),
            "max": max(r[key] for r in rounds),
        }
        for key in rounds[0]
    }
    settings = {"rounds": args.rounds, "rate": args.rate, "interval": args.interval,
                "min_requests": args.min_requests}  # fmt: skip
    if args.json:
        print(json.dumps({"settings": settings, "figures": figures}))
        return
    print(f"rollback of a canary failing half its calls, {settings}")
    for key, value in figures.items():
        print(f"  {key:<14} median {value['median']:.3f}  (min {value['min']:.3f}, "
              f"max {value['max']:.3f})")  # fmt: skip


if __name__ == "__main__":
    main()
