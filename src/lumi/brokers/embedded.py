"""The embedded broker — Lumi's default: a durable event log in one SQLite file per app.

``<app>/.lumi/events.db`` (WAL mode) is shared by every service process of the app on this
machine; each process opens it with its own connection. Publishing appends rows and returns
after the commit is on disk (group commit: concurrent publishes and acknowledgements share one
transaction and one fsync, see :mod:`._sqlite_writer`). Consumer groups keep a cursor and a
table of pending events (:mod:`._embedded_sql`); members lease events with a visibility timeout,
renewed while handlers run, so the events of a member that died are redelivered to the others
once their lease ends. Processes wake each other with one datagram per commit
(:mod:`._wakeup`) and poll slowly only as a fallback. Old events are deleted by age and count.

Configure it with the ``events`` value: ``embedded`` or, for example,
``embedded?retention=3d&max_events=1000000&lease=60``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lumi.brokers import _embedded_sql as sql
from lumi.brokers._sqlite_writer import SqliteWriter
from lumi.brokers._wakeup import Wakeup
from lumi.brokers.base import (
    Backoff,
    Broker,
    DeadLetter,
    DeliveryHandler,
    Subscription,
    check_subscription,
    dead_letter_topic,
)
from lumi.brokers.log_consumer import (
    Claim,
    ConsumerOptions,
    GroupLog,
    LogConsumer,
    LogReader,
    Tracked,
)
from lumi.model.context import new_id
from lumi.model.envelope import Envelope
from lumi.model.errors import ConfigError, Unavailable
from lumi.paths import AppPaths, private_file
from lumi.pipeline.consumer_dedupe import DedupeStore

log = logging.getLogger("lumi.brokers.embedded")

DAY = 86400.0


class EmbeddedBroker(Broker):
    """The SQLite event log at ``path``; see the module docstring for the design."""

    name = "embedded"

    def __init__(
        self,
        path: Path | str,
        *,
        backoff: Backoff | None = None,
        lease: float = 30.0,
        concurrency: int = 32,
        drain_timeout: float = 30.0,
        poll_interval: float = 1.0,
        retention: float | None = 7 * DAY,
        max_events: int | None = None,
        retention_interval: float = 60.0,
        busy_timeout: float = 30.0,
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.options = ConsumerOptions(
            concurrency=concurrency,
            lease=lease,
            backoff=backoff or Backoff(initial=0.2, maximum=60.0),
            drain_timeout=drain_timeout,
            poll_interval=poll_interval,
        )
        self.retention = retention
        self.max_events = max_events
        self.retention_interval = retention_interval
        self._busy_timeout = busy_timeout
        self._writer: SqliteWriter | None = None
        self._wakeup: Wakeup | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscriptions: dict[str, list[LogConsumer | LogReader]] = {}
        self._retention_task: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False

    @classmethod
    def from_url(cls, url: str, *, app_dir: Path, **options: Any) -> EmbeddedBroker:
        """``embedded[?retention=7d&max_events=N&lease=30]`` → the log in ``app_dir/.lumi``."""
        parsed = urllib.parse.urlsplit(url)
        for name, value in urllib.parse.parse_qsl(parsed.query, keep_blank_values=True):
            if name == "retention":
                options["retention"] = None if value == "forever" else _duration(name, value)
            elif name == "lease":
                options["lease"] = _duration(name, value)
            elif name == "max_events":
                if not value.isdigit() or int(value) < 1:
                    raise ConfigError(
                        f"events: max_events must be a positive integer, not {value!r}"
                    )
                options["max_events"] = int(value)
            else:
                raise ConfigError(
                    f"events: unknown option {name!r} of the embedded broker "
                    f"(valid: retention, max_events, lease)"
                )
        return cls(AppPaths(app_dir).events, **options)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        if self.started:
            return
        try:
            private_file(self.path)  # SQLite gives its -wal and -shm files this file's mode
        except OSError as exc:
            raise Unavailable(
                f"cannot create the event log folder {self.path.parent}: {exc.strerror}"
            ) from exc
        self._loop = asyncio.get_running_loop()
        writer = SqliteWriter(
            self.path,
            setup=sql.setup,
            after_commit=self._after_commit,
            busy_timeout=self._busy_timeout,
        )
        await writer.start()
        self._writer = writer
        self._wakeup = Wakeup(self.path.with_suffix(".wake"), token=new_id())
        self._wakeup.listen(self._wake_local)
        if self.retention is not None or self.max_events is not None:
            self._retention_task = asyncio.create_task(self._retain(), name="lumi-retention")
        await super().start()

    async def aclose(self) -> None:
        if self._closed or self._closing:
            return
        self._closing = True  # in-flight handlers still record their outcome while draining
        subscriptions = [s for subs in self._subscriptions.values() for s in subs]
        self._subscriptions.clear()
        for subscription in subscriptions:
            await subscription.aclose()
        self._closed = True
        if self._retention_task is not None:
            self._retention_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention_task
        if self._wakeup is not None:
            self._wakeup.close()
        if self._writer is not None:
            await self._writer.aclose()

    def _run(self, fn: Any, *, durable: bool = False, read_only: bool = False) -> Any:
        if self._writer is None or self._closed:
            raise RuntimeError(f"the embedded broker ({self.path}) is not started or is closed")
        return self._writer.submit(fn, durable=durable, read_only=read_only)

    def _woke(self, *topics: str) -> None:
        """Called by ops in the writer thread: wake consumers of ``topics`` after the commit."""
        assert self._writer is not None
        self._writer.wake_topics.update(topics)

    def _after_commit(self, topics: set[str]) -> None:
        if self._wakeup is not None:
            self._wakeup.notify(topics)
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                self._loop.call_soon_threadsafe(self._wake_local, set(topics))

    def _wake_local(self, topics: set[str] | None) -> None:
        for topic, subscriptions in self._subscriptions.items():
            if topics is None or topic in topics:
                for subscription in subscriptions:
                    subscription.wake()

    async def _retain(self) -> None:
        while True:
            try:
                deleted = await self._run(
                    lambda conn: sql.retain(
                        conn, max_age=self.retention, max_events=self.max_events, now=time.time()
                    )
                )
                if deleted:
                    log.info("retention removed %d event(s) from %s", deleted, self.path)
            except Exception:
                log.exception("applying retention to %s failed", self.path)
            await asyncio.sleep(self.retention_interval)

    # -- the contract --------------------------------------------------------------------------

    async def publish(self, topic: str, envelopes: Sequence[Envelope]) -> None:
        now = time.time()
        rows = [(topic, e.partitionkey, now, e.to_json()) for e in envelopes]

        def append(conn: Any) -> None:
            sql.publish(conn, rows)
            self._woke(topic)

        await self._run(append, durable=True)

    async def subscribe(
        self,
        topic: str,
        group: str | None,
        handler: DeliveryHandler,
        *,
        max_attempts: int = 5,
        start: str = "earliest",
    ) -> Subscription:
        check_subscription(topic, max_attempts, start)
        subscription: LogConsumer | LogReader
        if group is None:
            after = 0
            if start == "latest":
                after = await self._run(lambda conn: sql.last_seq(conn, topic), read_only=True)

            async def read(position: int, limit: int) -> list[tuple[int, bytes]]:
                rows: list[tuple[int, bytes]] = await self._run(
                    lambda conn: sql.read(conn, topic, position, limit), read_only=True
                )
                return rows

            subscription = LogReader(
                read, handler, topic=topic, after=after, poll_interval=self.options.poll_interval
            )
        else:
            await self._run(lambda conn: sql.ensure_group(conn, topic, group, start))
            subscription = LogConsumer(
                _EmbeddedGroup(self, topic, group),
                handler,
                topic=topic,
                group=group,
                max_attempts=max_attempts,
                options=self.options,
            )
        self._subscriptions.setdefault(topic, []).append(subscription)
        subscription.start()
        return Tracked(self._subscriptions, topic, subscription)

    async def dead_letters(
        self, topic: str | None = None, group: str | None = None, *, limit: int = 1000
    ) -> list[DeadLetter]:
        letters: list[DeadLetter] = await self._run(
            lambda conn: sql.dead_letters(conn, topic, group, limit), read_only=True
        )
        return letters

    async def replay(
        self,
        topic: str | None = None,
        group: str | None = None,
        *,
        event_ids: Sequence[str] | None = None,
    ) -> int:
        def revive(conn: Any) -> int:
            count, woken = sql.replay(conn, topic, group, event_ids)
            self._woke(*woken)
            return count

        count: int = await self._run(revive)
        return count

    # -- idempotent consumers ------------------------------------------------------------------

    def dedupe_store(self) -> DedupeStore:
        """The ``processed`` table of this log: shared by every process of the app."""
        return self

    async def seen(self, scope: str, event_id: str) -> bool:
        """Whether ``event_id`` was marked handled in ``scope`` (shared by all processes)."""
        found: bool = await self._run(lambda conn: sql.seen(conn, scope, event_id), read_only=True)
        return found

    async def mark(self, scope: str, event_id: str) -> None:
        """Record ``event_id`` as handled in ``scope`` (kept as long as events are)."""
        await self._run(lambda conn: sql.mark(conn, scope, event_id))


class _EmbeddedGroup(GroupLog):
    """A :class:`GroupLog` over the SQLite tables; every call is one op of the writer."""

    def __init__(self, broker: EmbeddedBroker, topic: str, group: str) -> None:
        self.broker = broker
        self.topic = topic
        self.group = group
        self.dlq = dead_letter_topic(topic, group)

    async def claim(self, member: str, limit: int, lease: float, max_attempts: int) -> Claim:
        def take(conn: Any) -> Claim:
            items, next_due, dead = sql.claim(
                conn, self.topic, self.group, member, limit, lease, max_attempts
            )
            if dead:
                self.broker._woke(self.dlq)
            return Claim(items, next_due)

        claim: Claim = await self.broker._run(take)
        return claim

    async def ack(self, seq: int) -> None:
        await self.broker._run(lambda conn: sql.ack(conn, self.topic, self.group, [seq]))

    async def retry(self, member: str, seq: int, delay: float, error: str) -> None:
        due = time.time() + delay
        await self.broker._run(
            lambda conn: sql.retry(conn, self.topic, self.group, member, seq, due, error)
        )

    async def dead_letter(self, seq: int, reason: str) -> None:
        def move(conn: Any) -> None:
            if sql.dead_letter(conn, self.topic, self.group, seq, reason):
                self.broker._woke(self.dlq)

        await self.broker._run(move)

    async def release(self, member: str, seqs: list[int]) -> None:
        await self.broker._run(lambda conn: sql.release(conn, self.topic, self.group, member, seqs))

    async def extend(self, member: str, seqs: list[int], lease: float) -> None:
        until = time.time() + lease
        await self.broker._run(
            lambda conn: sql.extend(conn, self.topic, self.group, member, seqs, until)
        )


_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY}


def _duration(name: str, value: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", value.strip())
    if match is None or float(match.group(1)) <= 0:
        raise ConfigError(
            f"events: {name} must be a duration such as 30s, 15m, 12h or 7d, not {value!r}"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]
