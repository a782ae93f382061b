"""The Lumi side of bench/http_bench.py: the same echo method as a Lumi service."""

from __future__ import annotations

from pydantic import BaseModel

import lumi


class Echoed(BaseModel):
    text: str
    n: int


class Bench(lumi.Service):
    @lumi.api
    async def echo(self, text: str, n: int) -> Echoed:
        return Echoed(text=text, n=n)
