"""Call metadata and the context of the call being handled.

:class:`Metadata` is what travels with every call and event (correlation id, W3C traceparent,
deadline, idempotency key, caller). The runtime sets a :class:`CallContext` in a contextvar
around each handler, so ``lumi.context()`` works anywhere below it and outbound calls and
publishes pick up the metadata to propagate.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import dataclasses
import itertools
import json
import os
import time
from collections.abc import Mapping
from typing import Any

from lumi.model.errors import InvalidArgument

MAX_USER_HEADER = 4096
"""Characters of an encoded :class:`User` on the wire (``x-lumi-user``)."""


@dataclasses.dataclass(frozen=True)
class User:
    """The end user a call is made for, as an app's ``@lumi.auth`` handler established it.

    ``id`` is the user's identifier (a token's ``sub``); ``claims`` what else the handler chose
    to keep (JSON values). Both follow the request to every service it reaches.
    """

    id: str
    claims: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def to_header(self) -> str:
        """The user as one visible-ASCII value (base64url of compact JSON)."""
        data = json.dumps({"id": self.id, "claims": dict(self.claims)}, separators=(",", ":"))
        return base64.urlsafe_b64encode(data.encode()).rstrip(b"=").decode()

    @classmethod
    def from_header(cls, value: str) -> User:
        """The user of a ``to_header`` value; InvalidArgument naming the field if it is not
        one (the value is not echoed)."""
        if not 0 < len(value) <= MAX_USER_HEADER:
            raise InvalidArgument(
                f"x-lumi-user must be 1-{MAX_USER_HEADER} characters (got {len(value)})",
                {"metadata": "x-lumi-user"},
            )
        try:
            data = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            data = None
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("id"), str)
            or not data["id"]
            or not isinstance(data.get("claims", {}), dict)
        ):
            raise InvalidArgument(
                "x-lumi-user is not an encoded user (base64url JSON with an id)",
                {"metadata": "x-lumi-user"},
            )
        return cls(data["id"], data.get("claims", {}))


@dataclasses.dataclass(slots=True)
class Metadata:
    """The metadata of one call or event, as carried on every wire."""

    correlation_id: str | None = None
    traceparent: str | None = None
    deadline: float | None = None  # absolute, seconds since the epoch
    idempotency_key: str | None = None
    caller: str | None = None  # the verified SPIFFE identity of the calling service (mTLS)
    user: User | None = None  # the end user, see User
    # "Bearer …" as received, for the service's auth handler; never propagated or logged
    authorization: str | None = dataclasses.field(default=None, repr=False)
    extra: dict[str, str] = dataclasses.field(default_factory=dict)
    # Who called the activator in front of this function instance ("" for no one): read only
    # from a peer with the callee service's own identity (lumi.security.guard), then cleared
    relayed_caller: str | None = None

    def remaining(self) -> float | None:
        """Seconds left until the deadline (may be negative), or None without a deadline."""
        return None if self.deadline is None else self.deadline - time.time()

    def expired(self) -> bool:
        return self.deadline is not None and time.time() >= self.deadline


@dataclasses.dataclass(slots=True)
class CallContext:
    """What a handler can know about the call it is serving."""

    service: str
    method: str
    metadata: Metadata
    kind: str = "rpc"  # "rpc" or "event"
    event_id: str | None = None
    attempt: int = 1
    topic: str | None = None  # the event's topic, for an event delivery
    sensitive: frozenset[str] = frozenset()  # parameters whose values must never be logged
    state: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def correlation_id(self) -> str | None:
        return self.metadata.correlation_id

    @property
    def caller(self) -> str | None:
        """The calling service's verified identity (``spiffe://<app>/<service>``), or None for
        a caller without a certificate (or with mTLS off)."""
        return self.metadata.caller

    @property
    def user(self) -> User | None:
        """The end user the call is made for, or None."""
        return self.metadata.user

    @property
    def deadline(self) -> float | None:
        return self.metadata.deadline


_current: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar(
    "lumi_call_context", default=None
)


def context() -> CallContext | None:
    """The context of the call being handled, or None outside a handler."""
    return _current.get()


def set_context(ctx: CallContext | None) -> contextvars.Token[CallContext | None]:
    return _current.set(ctx)


def reset_context(token: contextvars.Token[CallContext | None]) -> None:
    _current.reset(token)


# IDs are a random per-process prefix plus a counter: unique like a uuid4, but ~20x cheaper,
# which matters because every call mints a correlation id and an idempotency key.
_id_prefix = ""
_id_counter = itertools.count()


def _reseed_ids() -> None:
    global _id_prefix, _id_counter
    _id_prefix = os.urandom(10).hex()
    _id_counter = itertools.count()


_reseed_ids()
os.register_at_fork(after_in_child=_reseed_ids)


def new_id() -> str:
    """A 32-hex-digit id, unique across processes."""
    return f"{_id_prefix}{next(_id_counter) & 0xFFFFFFFFFFFF:012x}"


def outbound_metadata(
    *, timeout: float | None = None, idempotency_key: str | None = None
) -> Metadata:
    """Metadata for a call made now: inherits correlation, trace and the tighter deadline from
    the call being handled, if any."""
    current = _current.get()
    deadline = None if timeout is None else time.time() + timeout
    if current is None:
        return Metadata(correlation_id=new_id(), deadline=deadline, idempotency_key=idempotency_key)
    inherited = current.metadata
    if inherited.deadline is not None and (deadline is None or inherited.deadline < deadline):
        deadline = inherited.deadline
    return Metadata(
        correlation_id=inherited.correlation_id or new_id(),
        traceparent=inherited.traceparent,
        deadline=deadline,
        idempotency_key=idempotency_key,
        user=inherited.user,
    )
