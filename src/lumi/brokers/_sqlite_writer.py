"""One SQLite connection owned by one thread, with group commit.

Every write to the embedded log is a small function of the connection (an *op*). Callers in the
event loop submit ops and await their results; the thread takes every op that is waiting, runs
them in ONE transaction (each inside a savepoint, so one failing op does not undo the others)
and commits once. Under load many publishes and acknowledgements share one commit — and one
fsync — which is what makes durable publishing fast; with no load an op runs alone at once.

A batch containing a durable op (a publish) commits with ``synchronous=FULL``: the WAL is
fsynced before any of its callers hear back. Bookkeeping (claims, acks) commits with
``NORMAL``, which survives a crashed process and loses at worst an acknowledgement on power
loss — a redelivery, which at-least-once allows.

Several processes write the same file, so a transaction may find the write lock taken.
SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20 ms ... between tries, which put tens of
milliseconds into cross-process delivery; instead the connection does not wait at all and
:func:`lumi.retrying.while_locked` tries again after 50 µs, doubling up to 2 ms (a write
transaction here lasts well under a millisecond).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from lumi.model.errors import Unavailable
from lumi.retrying import while_locked

log = logging.getLogger("lumi.brokers.embedded")

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], T]
_MAX_BATCH = 512


@dataclasses.dataclass(slots=True)
class _QueuedOp:
    fn: Op[Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    durable: bool
    read_only: bool


_STOP = object()


class SqliteWriter:
    """Runs ops on a private connection in a thread; ``after_commit(ops' wake-up topics)`` is
    called in that thread after each successful commit."""

    def __init__(
        self,
        path: Path,
        *,
        setup: Callable[[sqlite3.Connection], None],
        after_commit: Callable[[set[str]], None],
        busy_timeout: float = 30.0,
    ) -> None:
        self.path = path
        self._setup = setup
        self._after_commit = after_commit
        self._busy_timeout = busy_timeout
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._synchronous = ""
        self.wake_topics: set[str] = set()  # filled by ops during a batch
        self._thread = threading.Thread(target=self._run, name=f"lumi-sqlite-{path.name}")
        self._thread.daemon = True  # a broker left open must not keep the interpreter alive

    async def start(self) -> None:
        self._thread.start()
        await asyncio.to_thread(self._ready.wait)
        if self._error is not None:
            raise Unavailable(f"cannot open the event log {self.path}: {self._error}")

    def submit(self, fn: Op[T], *, durable: bool = False, read_only: bool = False) -> Any:
        """Queue ``fn``; returns an awaitable of its result (its exception, if it raised)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_QueuedOp(fn, future, loop, durable, read_only))
        return future

    async def aclose(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            await asyncio.to_thread(self._thread.join)

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, timeout=0, check_same_thread=False
            )
            while_locked(lambda: self._setup(conn), self._busy_timeout)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            stop = False
            while not stop:
                first = self._queue.get()
                if first is _STOP:
                    break
                batch: list[_QueuedOp] = [first]
                while len(batch) < _MAX_BATCH:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stop = True
                        break
                    batch.append(item)
                self._execute(conn, batch)
        finally:
            conn.close()

    def _execute(self, conn: sqlite3.Connection, batch: list[_QueuedOp]) -> None:
        outcomes: list[tuple[_QueuedOp, Any, BaseException | None]] = []
        reads = [op for op in batch if op.read_only]
        writes = [op for op in batch if not op.read_only]
        for op in reads:
            try:
                result = while_locked(functools.partial(op.fn, conn), self._busy_timeout)
                outcomes.append((op, result, None))
            except Exception as exc:
                outcomes.append((op, None, exc))
        if writes:
            try:
                outcomes.extend(self._transaction(conn, writes))
            except Exception as exc:  # the connection itself failed (disk full, I/O error)
                log.exception("a transaction on the event log %s failed", self.path)
                with contextlib.suppress(sqlite3.Error):
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                error = Unavailable(f"the event log {self.path} failed: {exc}")
                outcomes.extend((op, None, error) for op in writes)
        _settle(outcomes)

    def _transaction(
        self, conn: sqlite3.Connection, ops: list[_QueuedOp]
    ) -> list[tuple[_QueuedOp, Any, BaseException | None]]:
        synchronous = "FULL" if any(op.durable for op in ops) else "NORMAL"
        self.wake_topics = set()
        try:
            if synchronous != self._synchronous:
                conn.execute(f"PRAGMA synchronous={synchronous}")
                self._synchronous = synchronous
            while_locked(lambda: conn.execute("BEGIN IMMEDIATE"), self._busy_timeout)
        except sqlite3.Error as exc:
            error = Unavailable(f"the event log {self.path} is unavailable: {exc}")
            return [(op, None, error) for op in ops]
        outcomes: list[tuple[_QueuedOp, Any, BaseException | None]] = []
        single = len(ops) == 1
        for op in ops:
            try:
                if not single:
                    conn.execute("SAVEPOINT op")
                result = op.fn(conn)
                if not single:
                    conn.execute("RELEASE op")
                outcomes.append((op, result, None))
            except Exception as exc:
                if not single:
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                outcomes.append((op, None, exc))
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            error = Unavailable(f"committing to the event log {self.path} failed: {exc}")
            return [(op, None, error) for op in ops]
        if self.wake_topics:
            try:
                self._after_commit(self.wake_topics)
            except Exception:
                log.exception("waking consumers failed")
        return outcomes


def _settle(outcomes: Iterable[tuple[_QueuedOp, Any, BaseException | None]]) -> None:
    """Hand results back to each caller's event loop, one callback per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_QueuedOp, Any, BaseException | None]]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].loop, []).append(outcome)
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, items)
        except RuntimeError:  # that loop is closed: nobody is waiting any more
            pass


def _resolve(items: list[tuple[_QueuedOp, Any, BaseException | None]]) -> None:
    for op, result, error in items:
        if op.future.done():
            continue
        if error is not None:
            op.future.set_exception(error)
        else:
            op.future.set_result(result)
