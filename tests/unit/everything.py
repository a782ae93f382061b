"""A service using every supported type (shared by interface and codegen tests)."""

from __future__ import annotations

import dataclasses
import datetime
import enum
from typing import Annotated, Literal

import pydantic

import lumi


class Mood(enum.Enum):
    HAPPY = "happy"
    GRUMPY = "grumpy"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Address(pydantic.BaseModel):
    street: str
    zip: str | None = None


class Person(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")

    name: str
    age: int = pydantic.Field(ge=0)
    addresses: list[Address] = []
    avatar: bytes | None = None
    tags: dict[str, str] = {}


@dataclasses.dataclass
class Point:
    x: float
    y: float


class Changed(pydantic.BaseModel):
    person: Person
    at: datetime.datetime


class Everything(lumi.Service):
    """Uses every type Lumi supports."""

    version = "1.2.3"
    changed = lumi.event(Changed, doc="A person changed.")

    @lumi.api(idempotent=True)
    async def scalars(
        self, b: bool, i: int, f: float, s: str, raw: bytes, nothing: None = None
    ) -> dict[str, str]:
        """Echo scalars as text."""
        return {"b": str(b), "i": str(i), "f": str(f), "s": s, "raw": raw.hex()}

    @lumi.api
    def times(self, when: datetime.datetime, day: datetime.date) -> list[datetime.datetime]:
        return [when, datetime.datetime.combine(day, datetime.time(), datetime.UTC)]

    @lumi.api
    async def choose(
        self, mood: Mood, level: Level, kind: Literal["a", "b"], maybe: int | None = None
    ) -> Mood:
        return mood

    @lumi.api
    async def people(
        self, person: Person, others: list[Person], by_name: dict[str, Person]
    ) -> Person:
        return person

    @lumi.api
    async def geometry(
        self,
        p: Point,
        n: Annotated[int, pydantic.Field(gt=0, le=10)],
        secret: Annotated[str, lumi.Sensitive] = "",
    ) -> Point:
        return Point(x=p.x * n, y=p.y * n)

    @lumi.api
    async def union(self, value: int | str | list[int]) -> int | str | list[int]:
        return value

    @lumi.api
    async def blob(self, data: bytes) -> bytes:
        return data[::-1]

    @lumi.api
    async def nothing(self) -> None:
        return None
