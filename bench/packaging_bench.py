"""Shipping benchmark: building the example app, and pushing/pulling artifacts to a local OCI
registry with Lumi's repository next to the same work done with raw ``oras`` library calls.

* build: ``lumi build`` of the example shop (four artifacts: wheel, lock, clients, manifest)
  against the peer a user would otherwise run, ``python -m build --wheel --no-isolation``
  (the wheel alone);
* push/pull: one artifact with a fresh incompressible layer of ``--mib`` MiB per round (fresh,
  so no round finds its blob already stored), to Debian's docker-registry with basic auth on
  127.0.0.1. Lumi: ``Repository.push`` / ``Repository.pull`` (digests verified, blob streamed).
  oras: ``Registry.push(files=[...])`` / ``Registry.pull(...)`` with the credentials set the
  way oras-py documents (basic auth, plus the header preset so large bodies are sent once).

Rounds alternate between the two sides; figures are medians. Run:
``python bench/packaging_bench.py [--rounds 5] [--mib 32] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import oras.provider  # noqa: E402
from tests.conformance.repository_contract import make_artifact  # noqa: E402
from tests.integration.shipping import shop_repo  # noqa: E402
from tests.registry import PASSWORD, USER, Registry  # noqa: E402

from lumi.packaging import oci  # noqa: E402
from lumi.packaging.build import build_app  # noqa: E402
from lumi.packaging.repository import Repository  # noqa: E402
from lumi.packaging.store.registry import RegistryStore  # noqa: E402


def bench_build(rounds: int, folder: Path) -> dict[str, float]:
    app = shop_repo(folder / "build")
    lumi_times, wheel_times = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        asyncio.run(build_app(app))
        lumi_times.append(time.perf_counter() - started)
        out = folder / "wheel-out"
        shutil.rmtree(out, ignore_errors=True)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir",
                        str(out), str(app)], check=True, capture_output=True)  # fmt: skip
        wheel_times.append(time.perf_counter() - started)
    return {"lumi_build_s": statistics.median(lumi_times),
            "python_m_build_wheel_s": statistics.median(wheel_times)}  # fmt: skip


def oras_client(registry: Registry) -> oras.provider.Registry:
    client = oras.provider.Registry(hostname=registry.host, insecure=True, auth_backend="basic")
    client.auth.set_basic_auth(USER, PASSWORD)
    client.set_header("Authorization", client.auth.get_auth_header()["Authorization"])
    return client


def bench_transfer(rounds: int, mib: int, folder: Path) -> dict[str, float]:
    registry = Registry()
    try:
        repo = Repository(RegistryStore(registry.url, username=USER, password=PASSWORD),
                          namespace="bench")  # fmt: skip
        client = oras_client(registry)
        size = mib << 20
        times: dict[str, list[float]] = {k: [] for k in ("lumi_push", "lumi_pull", "oras_push",
                                                          "oras_pull")}  # fmt: skip
        work = folder / "oras"
        work.mkdir()
        for n in range(rounds):
            order = ("lumi", "oras") if n % 2 == 0 else ("oras", "lumi")
            for side in order:
                payload = os.urandom(size)
                version = f"1.{n}.{0 if side == 'lumi' else 1}"
                if side == "lumi":
                    artifact = make_artifact(version=version, wheel=payload)
                    started = time.perf_counter()
                    asyncio.run(repo.push(artifact))
                    times["lumi_push"].append(time.perf_counter() - started)
                    started = time.perf_counter()
                    pulled = asyncio.run(repo.pull("Inventory", version))
                    times["lumi_pull"].append(time.perf_counter() - started)
                    assert pulled.layer(oci.WHEEL_MEDIA_TYPE).data == payload
                else:
                    blob = work / f"layer-{n}.bin"
                    blob.write_bytes(payload)
                    target = f"{registry.host}/bench/raw:{version}"
                    cwd = os.getcwd()
                    os.chdir(work)  # oras refuses files outside the working directory
                    try:
                        started = time.perf_counter()
                        client.push(target=target, files=[blob.name], quiet=True)
                        times["oras_push"].append(time.perf_counter() - started)
                        out = work / f"pulled-{n}"
                        started = time.perf_counter()
                        files = client.pull(target=target, outdir=str(out))
                        times["oras_pull"].append(time.perf_counter() - started)
                    finally:
                        os.chdir(cwd)
                    assert Path(files[0]).read_bytes() == payload
                    shutil.rmtree(out)
                    blob.unlink()
        medians = {k: statistics.median(v) for k, v in times.items()}
        return {f"{k}_mib_s": mib / v for k, v in medians.items()}
    finally:
        registry.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mib", type=int, default=32)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lumi-bench-") as tmp:
        figures: dict[str, Any] = {**bench_build(max(1, (args.rounds + 1) // 2), Path(tmp)),
                                   **bench_transfer(args.rounds, args.mib, Path(tmp))}  # fmt: skip
    figures["build_ratio"] = figures["lumi_build_s"] / figures["python_m_build_wheel_s"]
    figures["push_ratio"] = figures["lumi_push_mib_s"] / figures["oras_push_mib_s"]
    figures["pull_ratio"] = figures["lumi_pull_mib_s"] / figures["oras_pull_mib_s"]
    if args.json:
        print(json.dumps(figures))
        return
    print(f"build, example shop (4 artifacts): lumi build {figures['lumi_build_s']:.2f}s; "
          f"python -m build --wheel {figures['python_m_build_wheel_s']:.2f}s "
          f"(ratio {figures['build_ratio']:.2f})")  # fmt: skip
    for op in ("push", "pull"):
        print(f"{op} {args.mib} MiB: lumi {figures[f'lumi_{op}_mib_s']:.0f} MiB/s, "
              f"oras {figures[f'oras_{op}_mib_s']:.0f} MiB/s "
              f"(lumi/oras {figures[f'{op}_ratio']:.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
