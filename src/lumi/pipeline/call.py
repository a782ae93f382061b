"""The call pipeline: one ``Call`` type, handlers, and middleware composed around them.

A handler is ``async (Call) -> bytes``; a middleware is ``async (call, next_handler) -> bytes``,
composed once. Three kinds of call travel through the same shape, so every runtime service
written as middleware (logging, correlation, tracing, metrics, deadlines, retries) applies to
all of them and every transport and broker gets it without knowing it exists:

* ``kind="rpc"`` — a method call; ``body`` is the JSON arguments object, the result JSON.
* ``kind="event"`` — one delivery of an event to a subscribing handler; ``body`` is the payload.
* ``kind="publish"`` — a service publishing ``envelopes`` on ``topic``; the result is empty.
"""

from __future__ import annotations

import dataclasses
import functools
import types
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar, cast

from lumi.model.context import Metadata
from lumi.model.envelope import Envelope
from lumi.model.interface import MethodInfo


@dataclasses.dataclass(slots=True)
class Call:
    """One RPC, one event delivery, or one publish (see the module docstring).

    For an event ``method`` is the subscribing handler and ``topic``/``event_id``/``attempt``
    describe the delivery; for a publish ``method`` is the event's name and ``envelopes`` the
    batch. ``info`` (set by clients, never sent) lets the resilience layer see the method's
    idempotency and hints.
    """

    service: str
    method: str
    body: bytes
    metadata: Metadata
    kind: str = "rpc"
    topic: str | None = None
    event_id: str | None = None
    attempt: int = 1
    max_attempts: int = 0  # 0: unknown
    info: MethodInfo | None = None
    envelopes: Sequence[Envelope] = ()


Handler = Callable[[Call], Awaitable[bytes]]
_F = TypeVar("_F", bound=Callable[..., Any])


class Middleware(Protocol):
    """Wraps a handler: ``async (call, next_handler) -> bytes``.

    ``next_handler`` is passed by keyword (the protocol fixes the name, and mypy checks it), so
    :func:`compose` binds it with :func:`functools.partial`: one coroutine frame per layer.
    """

    def __call__(self, call: Call, next_handler: Handler) -> Awaitable[bytes]: ...


def compose(handler: Handler, middlewares: Iterable[Middleware]) -> Handler:
    """Wrap ``handler`` so that the first middleware is the outermost."""
    handler = bound(handler)
    for middleware in reversed(list(middlewares)):
        handler = functools.partial(bound(middleware), next_handler=handler)
    return handler


def bound(fn: _F) -> _F:
    """An object with a ``__call__`` method as that bound method: calling the object itself
    looks ``__call__`` up and binds it on every call (a third of a thin layer's cost)."""
    method = type(fn).__dict__.get("__call__") or getattr(type(fn), "__call__", None)  # noqa: B004
    if isinstance(method, types.FunctionType) and not isinstance(fn, type):
        return cast(_F, types.MethodType(method, fn))
    return fn
