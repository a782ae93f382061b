"""Services for the security tests (see lumi.toml)."""

from __future__ import annotations

import os

import pydantic

import lumi

verify = lumi.Jwt(key_env="SECURE_JWT_KEY", audience="secure")


class Seen(pydantic.BaseModel):
    """Who one service saw calling, and for whom."""

    service: str
    caller: str | None
    user: str | None
    role: str | None = None


def _seen(service: str) -> Seen:
    ctx = lumi.context()
    assert ctx is not None
    user = ctx.user
    role = user.claims.get("role") if user else None
    return Seen(service=service, caller=ctx.caller, user=user.id if user else None, role=role)


class Store(lumi.Service):
    """Keeps values; only Middle may call it (and Intruder, `peek` only)."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.ran: list[str] = []  # every method that ran, in order

    @lumi.api
    async def put(self, key: str, value: str) -> None:
        self.ran.append("put")
        self.values[key] = value

    @lumi.api(idempotent=True)
    async def get(self, key: str) -> str | None:
        self.ran.append("get")
        return self.values.get(key)

    @lumi.api(idempotent=True)
    async def peek(self) -> int:
        self.ran.append("peek")
        return len(self.values)

    @lumi.api(idempotent=True)
    async def whoami(self) -> list[Seen]:
        self.ran.append("whoami")
        return [_seen("Store")]

    @lumi.api(idempotent=True)
    async def history(self) -> list[str]:
        """What ran so far (the operator asks, to check a refused call never ran)."""
        return list(self.ran)


class Middle(lumi.Service):
    store: Store

    @lumi.api
    async def put(self, key: str, value: str) -> None:
        await self.store.put(key=key, value=value)

    @lumi.api(idempotent=True)
    async def get(self, key: str) -> str | None:
        return await self.store.get(key=key)

    @lumi.api(idempotent=True)
    async def whoami(self) -> list[Seen]:
        return [_seen("Middle"), *await self.store.whoami()]


class Front(lumi.Service):
    """What end users call, with a bearer token."""

    middle: Middle

    @lumi.auth
    async def authenticate(self, token: str) -> lumi.User:
        claims = await verify(token)
        return lumi.User(claims["sub"], {"role": claims.get("role")})

    @lumi.api(public=True, idempotent=True)
    async def whoami(self) -> list[Seen]:
        """The user and caller each hop saw, down to Store (two hops away)."""
        return [_seen("Front"), *await self.middle.whoami()]

    @lumi.api(public=True)
    async def remember(self, key: str, value: str) -> None:
        await self.middle.put(key=key, value=value)

    @lumi.api(idempotent=True)
    async def private_hello(self) -> str:
        return "hello, service"

    @lumi.api(idempotent=True)
    async def pid(self) -> int:
        return os.getpid()


class Intruder(lumi.Service):
    """A service of the app that Store does not admit (except to peek)."""

    store: Store

    @lumi.api
    async def try_put(self) -> str:
        await self.store.put(key="stolen", value="yes")
        return "put"

    @lumi.api(idempotent=True)
    async def try_peek(self) -> int:
        return await self.store.peek()
