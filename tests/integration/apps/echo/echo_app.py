"""A small app for integration tests: an echo service, a front that relays to it."""

from __future__ import annotations

import asyncio
import logging
import os

import lumi

log = logging.getLogger("echo")


class Echo(lumi.Service):
    """Echoes, sleeps, tells its pid, and can fail on purpose (driven by env variables)."""

    async def startup(self) -> None:
        if os.environ.get("ECHO_FAIL_STARTUP"):
            raise RuntimeError(os.environ["ECHO_FAIL_STARTUP"])

    @lumi.api(idempotent=True)
    async def echo(self, text: str, times: int = 1) -> str:
        return text * times

    @lumi.api(idempotent=True)
    async def whoami(self) -> int:
        return os.getpid()

    @lumi.api
    async def slow(self, seconds: float) -> float:
        log.info("slow call started")
        if os.environ.get("ECHO_MARKS"):  # lets a test see that the call is in flight
            with open(os.environ["ECHO_MARKS"], "a") as marks:  # noqa: ASYNC230 - a tiny write
                marks.write("slow\n")
        await asyncio.sleep(seconds)
        return seconds

    @lumi.api
    async def blob(self, data: bytes) -> int:
        return len(data)


class Front(lumi.Service):
    """Relays to Echo (an RPC hop between processes)."""

    echo: Echo

    @lumi.api(idempotent=True)
    async def relay(self, text: str) -> str:
        return await self.echo.echo(text=text, times=2)

    @lumi.api(idempotent=True)
    async def whoami(self) -> int:
        return await self.echo.whoami()
