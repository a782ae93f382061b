"""placement = "per-node" under ``lumi run --nodes 3``: one replica per node, node-local
routing, failover while the local one is down, and back to local when it returns."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import LumiRun, alive, copy_app, wait

pytestmark = pytest.mark.slow
NODES_APP = Path(__file__).parent / "apps" / "nodes"


def where(run: LumiRun, replica: int) -> dict[str, str]:
    """Ask Front's replica ``replica`` which node it is on and which Agent answered."""
    url = run.registry()["services"]["Front"]["replicas"][replica]["endpoints"][0]
    url = url.replace("http://", "https://", 1) if run.mtls else url
    answer = run.http.post(f"{url}/Front/where", content=b"{}",
                           headers={"content-type": "application/json"})  # fmt: skip
    assert answer.status_code == 200, answer.text
    found: dict[str, str] = answer.json()
    return found


def agents(registry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["node"]: r for r in registry["services"]["Agent"]["replicas"]}


def test_one_replica_per_node_and_local_routing(
    lumi_run: Callable[..., LumiRun], tmp_path: Path
) -> None:
    """Three nodes: three Agents, one each; every Front replica is served by its node's Agent;
    with its Agent killed, callers on that node fail over to another node, and go back to
    their own once it returns."""
    down = tmp_path / "down"
    run = lumi_run(copy_app(NODES_APP, tmp_path / "nodes"), "--nodes", "3",
                   env={"AGENT_DOWN": str(down)})  # fmt: skip
    registry = run.wait_ready()
    assert sorted(agents(registry)) == ["node-0", "node-1", "node-2"]
    fronts = registry["services"]["Front"]["replicas"]
    assert [r["node"] for r in fronts] == ["node-0", "node-1", "node-2"]
    for replica in range(3):
        for _ in range(5):  # not one call to another node
            assert where(run, replica) == {"caller": f"node-{replica}", "agent": f"node-{replica}"}

    victim = agents(registry)["node-1"]
    down.touch()  # its restarts fail until the file goes
    os.kill(victim["pid"], signal.SIGKILL)
    run.wait_output("Agent[1]: restart failed")
    for _ in range(5):
        away = where(run, 1)
        assert away["caller"] == "node-1" and away["agent"] in ("node-0", "node-2")
    assert where(run, 0) == {"caller": "node-0", "agent": "node-0"}  # others unaffected
    down.unlink()

    back = wait(lambda: agents(run.registry())["node-1"]["state"] == "ready" and agents(run.registry())["node-1"],
                timeout=30, message="the agent to be back")  # fmt: skip
    assert back["pid"] != victim["pid"] and alive(back["pid"])
    assert where(run, 1) == {"caller": "node-1", "agent": "node-1"}
