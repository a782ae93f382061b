"""Server-side deduplication by idempotency key.

Every logical call carries one idempotency key, the same on each retry. This middleware remembers
the result of each successful call by key (a bounded, least-recently-used cache with an age
limit), so a retry of a call that did succeed — whose answer was lost on the way back — gets the
same answer instead of running a non-idempotent method twice. A retry that arrives while the first
attempt is still running waits for it. Failed calls are not remembered: retrying them runs them
again, which is what a retry after UNAVAILABLE wants.

The cache is per replica: a retry that lands on another replica is not detected (use a shared
store in the method itself when that matters).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

from lumi.pipeline import Call, Handler


class _Pending:
    __slots__ = ("waiters",)

    def __init__(self) -> None:
        self.waiters: list[asyncio.Future[bytes]] = []


class IdempotencyCache:
    """Middleware: answer a repeated idempotency key from the first call's result."""

    def __init__(self, max_entries: int = 10_000, max_age: float = 600.0) -> None:
        self.max_entries = max_entries
        self.max_age = max_age
        self._done: OrderedDict[tuple[str, str, str], tuple[float, bytes]] = OrderedDict()
        self._pending: dict[tuple[str, str, str], _Pending] = {}
        self.hits = 0

    async def __call__(self, call: Call, next_handler: Handler) -> bytes:
        key = call.metadata.idempotency_key
        if key is None or call.kind != "rpc":
            return await next_handler(call)
        full = (call.service, call.method, key)
        done = self._done.get(full)
        if done is not None:
            stored_at, result = done
            if time.monotonic() - stored_at <= self.max_age:
                self._done.move_to_end(full)
                self.hits += 1
                return result
            del self._done[full]
        pending = self._pending.get(full)
        if pending is not None:
            waiter: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
            pending.waiters.append(waiter)
            self.hits += 1
            return await waiter
        pending = self._pending[full] = _Pending()
        try:
            result = await next_handler(call)
        except BaseException as exc:
            del self._pending[full]
            for waiter in pending.waiters:
                if not waiter.done():
                    # The waiters are retries: they should run the call themselves next time.
                    waiter.set_exception(exc if isinstance(exc, Exception) else RuntimeError())
            raise
        del self._pending[full]
        self._done[full] = (time.monotonic(), result)
        if len(self._done) > self.max_entries:
            self._done.popitem(last=False)
        for waiter in pending.waiters:
            if not waiter.done():
                waiter.set_result(result)
        return result

    def __len__(self) -> int:
        return len(self._done)
