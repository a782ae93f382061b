"""One ``lumi run examples/shop`` for the whole session, in a private copy of ``examples/``.

Tests that only need *a* running example app (the CLI behaviour tests, the docs' commands)
share it, so the suite starts the shop once. The workspace looks like this repository's root
(``examples/shop``, ``examples/storefront``), so a command written in the docs as
``lumi ... --app examples/shop`` runs there exactly as written. Tests must leave the app
running and must not rely on state other tests create (each places its own orders).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import LumiRun, alive, wait

ROOT = Path(__file__).resolve().parents[2]


class RunningShop:
    """The workspace and the ``lumi run`` serving ``<workspace>/examples/shop``."""

    def __init__(self, workspace: Path, run: LumiRun) -> None:
        self.workspace = workspace
        self.app = workspace / "examples" / "shop"
        self.run = run

    def lumi(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``lumi ARGS`` from the workspace, as a user types it (one wide, colourless
        terminal line per output line)."""
        return subprocess.run(
            [sys.executable, "-m", "lumi.cli.main", *args],
            cwd=self.workspace,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
        )


def copy_examples(target: Path) -> Path:
    """A copy of ``examples/`` under ``target`` (no local state, no bytecode)."""
    shutil.copytree(
        ROOT / "examples",
        target / "examples",
        ignore=shutil.ignore_patterns("__pycache__", ".lumi", "gen"),
    )
    return target


@pytest.fixture(scope="session")
def running_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningShop]:
    """The example shop, running for the whole session (dashboard on a free port)."""
    workspace = copy_examples(tmp_path_factory.mktemp("workspace"))
    run = LumiRun(workspace / "examples" / "shop", "--dashboard-port", "0")
    try:
        run.wait_ready(timeout=120)
        run.wait_output("dashboard: http")
        yield RunningShop(workspace, run)
    finally:
        pids = run.pids()
        run.stop()
        wait(lambda: not any(alive(p) for p in pids), timeout=30, message="no orphans")
