"""Fixtures that start apps with ``lumi run`` and always stop them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.event_harness import Worker, running_workers
from tests.integration.harness import LumiRun, alive, copy_app, wait

ECHO_APP = Path(__file__).parent / "apps" / "echo"


@pytest.fixture
def lumi_run() -> Iterator[Callable[..., LumiRun]]:
    """Start ``lumi run`` subprocesses; any still running at teardown are stopped, and every
    process they started must be gone."""
    runs: list[LumiRun] = []

    def start(app_dir: Path, *args: str, env: dict[str, str] | None = None) -> LumiRun:
        run = LumiRun(app_dir, *args, env=env)
        runs.append(run)
        return run

    yield start
    for run in runs:
        pids = run.pids()
        run.stop()
        wait(lambda pids=pids: not any(alive(p) for p in pids), timeout=30, message="no orphans")


@pytest.fixture
def echo_app(tmp_path: Path) -> Path:
    """A private copy of the echo test app."""
    return copy_app(ECHO_APP, tmp_path / "echo")


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    """Worker processes started by a test; all are killed at teardown."""
    with running_workers() as started:
        yield started
