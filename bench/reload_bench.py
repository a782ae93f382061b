"""Hot-reload benchmark: ``lumi run --reload`` vs ``uvicorn --reload``, side by side in one run.

Each contestant serves a price; a round edits the source file that holds it and measures the
time from the write until the new price is served five times in a row. Lumi runs the example
shop (five replicas) and the edit is to ``catalog.py`` (two replicas restart); uvicorn runs a
one-file FastAPI app. Rounds alternate between the two; each figure is the median.

Run: ``python bench/reload_bench.py [--rounds 5] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from http_bench import free_port  # noqa: E402

PEAR_PRICE = 'price_cents={}),\n    "melon"'  # the pear's line in catalog.py, then the next
FASTAPI_APP = """from fastapi import FastAPI

app = FastAPI()
PRICE = 75


@app.post("/Catalog/product")
def product() -> dict[str, int]:
    return {"price_cents": PRICE}
"""


def price(url: str) -> int | None:
    request = urllib.request.Request(
        url, data=b'{"sku": "pear"}', headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(json.loads(response.read())["price_cents"])
    except (OSError, ValueError, KeyError):
        return None


def served_after(url: str, want: int, edited: float, timeout: float = 30.0) -> float:
    """Seconds from ``edited`` until ``want`` is answered five times in a row."""
    streak, first = 0, 0.0
    while streak < 5:
        if time.monotonic() - edited > timeout:
            raise RuntimeError(f"{url} never served {want}")
        if price(url) == want:
            first = first if streak else time.monotonic()
            streak += 1
        else:
            streak = 0
            time.sleep(0.005)
    return first - edited


def catalog_url(app: Path, timeout: float = 90.0) -> str:
    """Catalog[0]'s endpoint, from the registry ``lumi run`` writes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            registry = json.loads((app / ".lumi" / "registry.json").read_text())
            return f"{registry['services']['Catalog']['endpoints'][0]}/Catalog/product"
        except (OSError, ValueError, KeyError):
            time.sleep(0.1)
    raise RuntimeError("lumi run wrote no registry")


class Contestant:
    def __init__(
        self, name: str, cmd: list[str], cwd: Path, file: Path, url: str, old: str
    ) -> None:
        self.name, self.file, self.url, self.old = name, file, url, old
        self.log = (cwd / "out.log").open("w")
        env = {**os.environ, "NO_COLOR": "1"}
        self.proc = subprocess.Popen(
            cmd, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT, env=env
        )
        self.value = 75

    def ready(self, text: str = "") -> None:
        deadline = time.monotonic() + 90
        while price(self.url) != self.value or (text and text not in self._out()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} did not start:\n{self._out()}")
            time.sleep(0.05)

    def _out(self) -> str:
        return (
            (self.file.parents[1] if self.name == "lumi" else self.file.parent)
            .joinpath("out.log")
            .read_text()
        )

    def round(self) -> float:
        new = self.value + 1
        text = self.file.read_text().replace(self.old.format(self.value), self.old.format(new))
        self.file.write_text(text)
        seconds = served_after(self.url, new, time.monotonic())
        self.value = new
        time.sleep(1.0)  # let the old process finish draining before the next edit
        return seconds

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self.log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lumi-reload-bench-") as tmp:
        shop = Path(tmp) / "shop"
        shutil.copytree(
            ROOT / "examples" / "shop", shop, ignore=shutil.ignore_patterns(".lumi", "__pycache__")
        )
        with (shop / "lumi.toml").open("a") as config:  # the peer speaks plain HTTP: so do we
            config.write("\n[security]\nmtls = false\n")
        plain = Path(tmp) / "plain"
        plain.mkdir()
        (plain / "app.py").write_text(FASTAPI_APP)
        uvicorn_port = free_port()
        catalog = shop / "shop" / "catalog.py"
        lumi_cmd = [sys.executable, "-m", "lumi.cli.main", "run", str(shop), "--reload"]
        lumi = Contestant("lumi", [*lumi_cmd, "--no-dashboard"], shop, catalog, "", PEAR_PRICE)
        uvicorn_cmd = [sys.executable, "-m", "uvicorn", "app:app", "--reload"]
        uvicorn = Contestant(
            "uvicorn",
            [*uvicorn_cmd, "--host", "127.0.0.1", "--port", str(uvicorn_port)],
            plain,
            plain / "app.py",
            f"http://127.0.0.1:{uvicorn_port}/Catalog/product",
            "PRICE = {}",
        )
        try:
            lumi.url = catalog_url(shop)
            lumi.ready("reload: watching")
            uvicorn.ready()
            times: dict[str, list[float]] = {"lumi": [], "uvicorn": []}
            for index in range(args.rounds):
                order = (lumi, uvicorn) if index % 2 == 0 else (uvicorn, lumi)
                for contestant in order:
                    times[contestant.name].append(contestant.round())
        finally:
            lumi.stop()
            uvicorn.stop()
    result = {f"{name}_ms": round(statistics.median(v) * 1000, 1) for name, v in times.items()}
    result["uvicorn_over_lumi"] = round(result["uvicorn_ms"] / result["lumi_ms"], 2)
    result["rounds"] = args.rounds
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"edit → new code served: lumi --reload {result['lumi_ms']} ms, uvicorn --reload "
            f"{result['uvicorn_ms']} ms ({result['uvicorn_over_lumi']}x)"
        )


if __name__ == "__main__":
    main()
