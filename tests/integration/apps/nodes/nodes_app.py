"""A per-node test app: Agent runs once on every node; Front (three replicas, spread over the
nodes) calls it and says which node answered."""

from __future__ import annotations

import os

import lumi


class Agent(lumi.Service):
    """One replica per node (placement = "per-node"); it will not start while the file
    $AGENT_DOWN names exists (so a test can keep it down)."""

    def startup(self) -> None:
        down = os.environ.get("AGENT_DOWN")
        if down and os.path.exists(down):
            raise RuntimeError("kept down by the test")

    @lumi.api(idempotent=True)
    async def node(self) -> str:
        return os.environ["LUMI_NODE"]


class Front(lumi.Service):
    """An ordinary service calling the agent."""

    agent: Agent

    @lumi.api(idempotent=True)
    async def where(self) -> dict[str, str]:
        return {"caller": os.environ["LUMI_NODE"], "agent": await self.agent.node()}
