"""Call metadata and the context of the call being handled.

:class:`Metadata` is what travels with every call and event (correlation id, W3C traceparent,
deadline, idempotency key, caller). The runtime sets a :class:`CallContext` in a contextvar
around each handler, so ``lumi.context()`` works anywhere below it and outbound calls and
publishes pick up the metadata to propagate.
"""

from __future__ import annotations

import contextvars
import dataclasses
import itertools
import os
import time
from typing import Any


@dataclasses.dataclass(slots=True)
class Metadata:
    """The metadata of one call or event, as carried on every wire."""

    correlation_id: str | None = None
    traceparent: str | None = None
    deadline: float | None = None  # absolute, seconds since the epoch
    idempotency_key: str | None = None
    caller: str | None = None
    extra: dict[str, str] = dataclasses.field(default_factory=dict)

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
        caller=current.service,
    )
