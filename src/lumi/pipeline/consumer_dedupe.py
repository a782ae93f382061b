"""Idempotent consumers: skip events a handler has already handled, by event id.

Delivery is at-least-once, so a handler can see an event twice (its process died after the
handler ran but before the acknowledgement was stored, a lease ran out, a dead letter was
replayed). Mark a handler and the runtime remembers the ids it handled::

    class Mailer(lumi.Service):
        @lumi.subscribe(Orders.placed)
        @lumi.idempotent_consumer
        async def on_placed(self, event: Placed) -> None: ...

An event is recorded after the handler returns, so a handler that failed runs again on
redelivery. The default store is the broker's: on the embedded broker a table in the app's
event log, shared by every replica on the machine; elsewhere a bounded in-process memory (so
duplicates are caught only within one replica). Pass ``store=`` any :class:`DedupeStore` (a
Redis or SQL table of your own) to share it wider. For effects that must happen exactly once,
write the event id in the same transaction as the effect instead; this helper narrows the
window, it cannot close it.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, overload, runtime_checkable

F = TypeVar("F", bound=Callable[..., Any])

IDEMPOTENT_ATTR = "__lumi_idempotent__"


@runtime_checkable
class DedupeStore(Protocol):
    """Where handled event ids are remembered; ``scope`` separates consumer groups."""

    async def seen(self, scope: str, event_id: str) -> bool: ...

    async def mark(self, scope: str, event_id: str) -> None: ...


class MemoryDedupeStore:
    """The last ``capacity`` handled ids per process (oldest forgotten first)."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._ids: collections.OrderedDict[tuple[str, str], None] = collections.OrderedDict()

    async def seen(self, scope: str, event_id: str) -> bool:
        return (scope, event_id) in self._ids

    async def mark(self, scope: str, event_id: str) -> None:
        self._ids[scope, event_id] = None
        self._ids.move_to_end((scope, event_id))
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)


@dataclasses.dataclass(frozen=True)
class IdempotentOptions:
    store: DedupeStore | None = None


@overload
def idempotent_consumer(fn: F, /) -> F: ...
@overload
def idempotent_consumer(*, store: DedupeStore | None = None) -> Callable[[F], F]: ...
def idempotent_consumer(
    fn: F | None = None, /, *, store: DedupeStore | None = None
) -> F | Callable[[F], F]:
    """Mark an event handler to skip events (by id) it already handled; see
    :mod:`lumi.pipeline.consumer_dedupe`.

    ``@lumi.idempotent_consumer`` or ``@lumi.idempotent_consumer(store=my_store)``. Like every
    Lumi decorator it only registers: the method itself is unchanged.
    """
    if store is not None and not isinstance(store, DedupeStore):
        raise TypeError(f"store must have async seen() and mark() methods, not {store!r}")
    options = IdempotentOptions(store)

    def register(func: F) -> F:
        setattr(func, IDEMPOTENT_ATTR, options)
        return func

    return register(fn) if fn is not None else register


def idempotent_options(func: Any) -> IdempotentOptions | None:
    options = getattr(func, IDEMPOTENT_ATTR, None)
    return options if isinstance(options, IdempotentOptions) else None
