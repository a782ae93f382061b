"""Services the transport contract calls: every JSON-like type, errors, metadata, a chain."""

from __future__ import annotations

import asyncio
import datetime
import enum
import json

import pydantic

import lumi


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"
    SKY_BLUE = "sky blue"


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Inner(pydantic.BaseModel):
    label: str
    weight: float = 1.0
    child: Inner | None = None


class Payload(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")

    text: str
    count: int
    ratio: float
    flag: bool
    raw: bytes
    when: datetime.datetime
    day: datetime.date
    color: Color
    priority: Priority
    inner: Inner
    inners: list[Inner]
    tags: dict[str, int]
    names: list[str]
    maybe: int | None = None
    note: str | None = None
    choice: int | str | list[int] = 0
    grid: list[list[int]] = []


class Chosen(pydantic.BaseModel):
    a: int | None
    b: str
    c: list[int]
    d: dict[str, str] | None
    e: Color


class Echo(lumi.Service):
    """Echoes what it gets; raises what it is told to; reports the call's metadata."""

    version = "1.0.0"

    async def startup(self) -> None:
        self.runs: dict[str, int] = {}

    @lumi.api(idempotent=True)
    async def echo(self, p: Payload) -> Payload:
        return p

    @lumi.api(idempotent=True)
    async def number(self, n: int) -> int:
        return n

    @lumi.api(idempotent=True)
    async def real(self, x: float) -> float:
        return x

    @lumi.api(idempotent=True)
    async def union(self, v: int | str | list[int] | None) -> int | str | list[int] | None:
        return v

    @lumi.api(idempotent=True)
    async def defaults(
        self,
        a: int | None = None,
        b: str = "b",
        c: list[int] = [],  # noqa: B006 - pydantic copies defaults
        d: dict[str, str] | None = None,
        e: Color = Color.GREEN,
    ) -> Chosen:
        return Chosen(a=a, b=b, c=c, d=d, e=e)

    @lumi.api
    async def nothing(self) -> None:
        return None

    @lumi.api
    async def fail(self, code: str, message: str, details: str | None = None) -> None:
        """Raise the error ``code`` with ``message`` and ``details`` (given as JSON text)."""
        raise lumi.LumiError.for_code(code)(
            message, None if details is None else json.loads(details)
        )

    @lumi.api(idempotent=True)
    async def metadata(self) -> dict[str, str | float | None]:
        ctx = lumi.context()
        assert ctx is not None
        meta = ctx.metadata
        return {
            "correlation_id": meta.correlation_id,
            "traceparent": meta.traceparent,
            "idempotency_key": meta.idempotency_key,
            "caller": meta.caller,
            "user": meta.user.id if meta.user else None,
            "remaining": meta.remaining(),
        }

    @lumi.api(idempotent=True)
    async def size(self, data: str) -> int:
        return len(data)

    @lumi.api(idempotent=True)
    async def slow_idempotent(self, seconds: float, tag: str) -> str:
        self.runs[tag] = self.runs.get(tag, 0) + 1
        await asyncio.sleep(seconds)
        return tag

    @lumi.api
    async def slow(self, seconds: float, tag: str) -> str:
        self.runs[tag] = self.runs.get(tag, 0) + 1
        await asyncio.sleep(seconds)
        return tag


class Seen(pydantic.BaseModel):
    """What one hop saw of its call's metadata."""

    service: str
    correlation_id: str | None
    trace_id: str | None
    caller: str | None
    user: str | None = None


class Hop3(lumi.Service):
    """The last hop: reports the metadata it was called with."""

    @lumi.api(idempotent=True)
    async def where(self) -> list[Seen]:
        return [_seen("Hop3")]


class Hop2(lumi.Service):
    hop3: Hop3

    @lumi.api(idempotent=True)
    async def where(self) -> list[Seen]:
        return [_seen("Hop2"), *await self.hop3.where()]


class Hop1(lumi.Service):
    hop2: Hop2

    @lumi.api(idempotent=True)
    async def where(self) -> list[Seen]:
        return [_seen("Hop1"), *await self.hop2.where()]


def _seen(name: str) -> Seen:
    ctx = lumi.context()
    assert ctx is not None
    trace = ctx.metadata.traceparent
    return Seen(
        service=name,
        correlation_id=ctx.metadata.correlation_id,
        trace_id=trace.split("-")[1] if trace else None,
        caller=ctx.metadata.caller,
        user=ctx.user.id if ctx.user else None,
    )
