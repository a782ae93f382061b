"""Server-side deduplication by idempotency key.

Every logical call of a non-idempotent method carries one idempotency key, the same on each
retry. This guard (it runs after the arguments validated, around the method itself) remembers
the result of each successful call, so a retry of a call that did succeed — whose answer was
lost on the way back — gets the same answer instead of running the method twice. A retry that
arrives while the first attempt is still running waits for it. Failed calls are not remembered:
retrying them runs them again, which is what a retry after UNAVAILABLE wants.

A key belongs to its caller and to its request:

* it is scoped to the caller (``x-lumi-caller``; with mTLS, the verified identity) as well as
  the service and method, so two callers picking the same key never see each other's answers;
* it is bound to a SHA-256 of the arguments as sent (the JSON text): the same key with other
  arguments is FAILED_PRECONDITION — the new write is refused loudly, never dropped silently
  (Stripe's rule). Invalid arguments never get this far, so they are never answered from here.

The cache is bounded three ways: entries (LRU), age, and bytes of stored answers. It is per
replica: a retry that lands on another replica is not detected (use a shared store in the
method itself when that matters).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict

from lumi.model.errors import FailedPrecondition
from lumi.pipeline import Call, Handler
from lumi.pipeline.edge import excerpt

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
_OVERHEAD = 200  # bytes per entry besides the answer: key, digest, bookkeeping

Key = tuple[str, str, str, str]  # caller, service, method, idempotency key


class _Pending:
    __slots__ = ("digest", "waiters")

    def __init__(self, digest: bytes) -> None:
        self.digest = digest
        self.waiters: list[asyncio.Future[bytes]] = []


class IdempotencyCache:
    """Guard: answer a repeated idempotency key from the first call's result."""

    def __init__(
        self,
        max_entries: int = 10_000,
        max_age: float = 600.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.max_entries = max_entries
        self.max_age = max_age
        self.max_bytes = max_bytes
        self.bytes = 0
        self._done: OrderedDict[Key, tuple[float, bytes, bytes]] = OrderedDict()
        self._pending: dict[Key, _Pending] = {}
        self.hits = 0

    async def __call__(self, call: Call, next_handler: Handler) -> bytes:
        meta = call.metadata
        idem = meta.idempotency_key
        if idem is None or call.kind != "rpc":
            return await next_handler(call)
        key: Key = (meta.caller or "", call.service, call.method, idem)
        digest = hashlib.sha256(call.body).digest()
        done = self._done.get(key)
        if done is not None:
            stored_at, stored_digest, result = done
            if time.monotonic() - stored_at <= self.max_age:
                _same_arguments(call, idem, stored_digest, digest)
                self._done.move_to_end(key)
                self.hits += 1
                return result
            self._forget(key)
        pending = self._pending.get(key)
        if pending is not None:
            _same_arguments(call, idem, pending.digest, digest)
            waiter: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
            pending.waiters.append(waiter)
            self.hits += 1
            return await waiter
        pending = self._pending[key] = _Pending(digest)
        try:
            result = await next_handler(call)
        except BaseException as exc:
            del self._pending[key]
            for waiter in pending.waiters:
                if not waiter.done():
                    # The waiters are retries: they should run the call themselves next time.
                    waiter.set_exception(exc if isinstance(exc, Exception) else RuntimeError())
            raise
        del self._pending[key]
        self._remember(key, digest, result)
        for waiter in pending.waiters:
            if not waiter.done():
                waiter.set_result(result)
        return result

    def _remember(self, key: Key, digest: bytes, result: bytes) -> None:
        size = len(result) + sum(map(len, key)) + _OVERHEAD
        if size > self.max_bytes:
            return  # larger than the whole cache: a retry runs the method again
        now = time.monotonic()
        if key in self._done:
            self._forget(key)
        self._done[key] = (now, digest, result)
        self.bytes += size
        done = self._done
        while done and (
            len(done) > self.max_entries
            or self.bytes > self.max_bytes
            or now - next(iter(done.values()))[0] > self.max_age
        ):
            self._forget(next(iter(done)))

    def _forget(self, key: Key) -> None:
        _, _, result = self._done.pop(key)
        self.bytes -= len(result) + sum(map(len, key)) + _OVERHEAD

    def __len__(self) -> int:
        return len(self._done)


def _same_arguments(call: Call, key: str, stored: bytes, digest: bytes) -> None:
    if stored != digest:
        raise FailedPrecondition(
            f"idempotency key {excerpt(key)!r} was already used for {call.service}."
            f"{call.method} with other arguments; a new call needs a new key",
            {"idempotency_key": excerpt(key)},
        )
