"""The call pipeline: one ``Call`` type, handlers, and middleware composed around them.

A handler is ``async (Call) -> bytes`` (the JSON result); a middleware is
``async (Call, next_handler) -> bytes``. The runtime services (logging, correlation, tracing,
metrics, deadlines, retries) are middleware, composed once in one place, so every transport
and broker gets them without knowing they exist.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable

from lumi.context import Metadata
from lumi.interface import MethodInfo


@dataclasses.dataclass(slots=True)
class Call:
    """One RPC (``kind="rpc"``) or one event delivery (``kind="event"``).

    ``body`` is JSON: the arguments object of an RPC, or the payload of an event. For an event
    ``method`` is the subscribing handler and ``topic``/``event_id``/``attempt`` describe the
    delivery.
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


Handler = Callable[[Call], Awaitable[bytes]]
Middleware = Callable[[Call, Handler], Awaitable[bytes]]


def compose(handler: Handler, middlewares: Iterable[Middleware]) -> Handler:
    """Wrap ``handler`` so that the first middleware is the outermost."""
    for middleware in reversed(list(middlewares)):
        handler = _bind(middleware, handler)
    return handler


def _bind(middleware: Middleware, next_handler: Handler) -> Handler:
    # A middleware that takes ``next_handler`` by name (Lumi's own do) is bound with
    # functools.partial: one coroutine frame per call instead of two.
    if "next_handler" in inspect.signature(middleware).parameters:
        target = middleware if inspect.isroutine(middleware) else middleware.__call__  # type: ignore[operator]
        bound: Handler = functools.partial(target, next_handler=next_handler)
        return bound

    async def handle(call: Call) -> bytes:
        return await middleware(call, next_handler)

    handle.__qualname__ = f"{getattr(middleware, '__qualname__', type(middleware).__name__)}>"
    return handle
