"""A call between two ``lumi run`` replicas under fan-out: one request to Front makes 500
concurrent calls to Back through Front's one channel; all succeed, ``defaults.pool_size`` of
them are in flight together, and Back never holds more connections than that."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import copy_app
from tests.tcpstate import established

pytestmark = pytest.mark.slow

FANOUT_APP = Path(__file__).parent / "apps" / "fanout"
POOL_SIZE = 64  # defaults.pool_size in the app's lumi.toml


def test_500_concurrent_calls_between_replicas_use_bounded_connections(
    lumi_run: Any, tmp_path: Path
) -> None:
    """Front.fan(500) returns every answer; Back saw exactly pool_size calls in flight at once
    and, counted by the kernel, never more than pool_size connections."""
    app = copy_app(FANOUT_APP, tmp_path / "fanout")
    run = lumi_run(app, "--no-dashboard")  # its metrics scrapes would be one more connection
    run.wait_ready()
    back_port = int(run.endpoint("Back").rsplit(":", 1)[1])
    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.append(established(back_port))
            done.wait(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        response = run.post("Front", "fan", {"calls": 500}, timeout=120)
    finally:
        done.set()
        watcher.join()
    assert response.status_code == 200, response.text
    assert response.json() == list(range(500))
    stats = run.post("Front", "back_stats").json()
    assert stats == {"peak": POOL_SIZE, "released_at_target": True}
    assert seen and max(seen) <= POOL_SIZE
    assert max(seen) >= POOL_SIZE // 2  # the watcher did see the fan-out
