"""The seam proof, part 2: an app whose transport, broker and runtime all come from the toy
distribution in tests/plugins is chosen by lumi.toml alone, runs under `lumi run` and is
called by `lumi call` — with no change to src/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.integration.harness import copy_app, wait

TOYS = Path(__file__).parent / "apps" / "toys"


def lumi(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lumi.cli.main", *args],
        capture_output=True, text=True, timeout=60, env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip


def test_an_app_on_plugin_backends_runs_and_is_called(lumi_run: Any, tmp_path: Path) -> None:
    """Calls travel over jsonl between thread replicas and events over the toy broker."""
    app = copy_app(TOYS, tmp_path / "toys")
    run = lumi_run(app)
    registry = run.wait_ready()
    front = registry["services"]["Front"]
    assert front["endpoints"][0].startswith("jsonl://")
    assert {r["runtime"] for s in registry["services"].values() for r in s["replicas"]} == {
        "thread"
    }
    called = lumi("call", "Front.add_twice", "amount=3", "--app", str(app))
    assert called.returncode == 0, called.stderr
    assert json.loads(called.stdout) == 6

    def total() -> int:
        answer = lumi("call", "Tally.total", "--app", str(app))
        assert answer.returncode == 0, answer.stderr
        return int(json.loads(answer.stdout))

    assert wait(lambda: total() == 6, message="Tally to count both events")
    bad = lumi("call", "Tally.total", "--transport", "http", "--app", str(app))
    assert bad.returncode == 1
    assert "Tally does not serve 'http'" in bad.stderr and "(transports: jsonl)" in bad.stderr
