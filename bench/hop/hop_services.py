"""The Lumi side of bench/hop_bench.py: Front relays each call to Back (one hop more)."""

from __future__ import annotations

from pydantic import BaseModel

import lumi


class Echoed(BaseModel):
    text: str
    n: int


class Back(lumi.Service):
    @lumi.api
    async def echo(self, text: str, n: int) -> Echoed:
        return Echoed(text=text, n=n)


class Front(lumi.Service):
    back: Back

    @lumi.api
    async def relay(self, text: str, n: int) -> Echoed:
        return await self.back.echo(text=text, n=n)
