"""The services of bench/mtls_bench.py."""

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
    async def echo(self, text: str, n: int) -> Echoed:
        """One hop: answered here."""
        return Echoed(text=text, n=n)

    @lumi.api
    async def relay(self, text: str, n: int) -> Echoed:
        """Two hops: Front asks Back."""
        return await self.back.echo(text=text, n=n)
