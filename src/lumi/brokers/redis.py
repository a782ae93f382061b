"""The Redis broker: events on Redis Streams (redis-py's asyncio client), one stream per topic.

    events = "redis://127.0.0.1:6379/0"
    events = "rediss://:${REDIS_PASSWORD}@cache.internal:6380/0?ssl_ca_certs=/etc/ca.pem&maxlen=100000"

* **Publishing** is ``XADD lumi:<topic> MAXLEN ~ <maxlen>`` with the CloudEvents JSON in the
  field ``event`` and the partition key in ``key``; a batch is one ``MULTI``/``EXEC``. It returns
  when Redis has the entry: as durable as the server is configured to be (``appendonly yes`` with
  ``appendfsync always`` survives a crash of the server; ``everysec`` can lose the last second).
* **Consumer groups** are Redis consumer groups, one per subscribing service; members are the
  service's replicas. A member blocks in ``XREADGROUP`` on a connection of its own and handles
  what it returns; keyed entries first go through one Lua script (:mod:`._redis_scripts`) that
  keeps per-key order across members: while an event with a key is pending, later events with
  that key are parked in Redis and come back, in order, through the group's ``ready`` stream
  when it is settled. Once per poll interval a claim script runs ``XAUTOCLAIM``, which takes
  over the events of members whose lease (the minimum idle time) ran out — dead or hung
  replicas, retries that fell due.
* **Success** is ``XACK`` (batched; a script for keyed events, which frees the key);
  **failure** sets the entry's idle time so ``XAUTOCLAIM`` hands it out
  again after the backoff (at most one lease later: longer backoffs are cut to the lease);
  attempts are the delivery counts. After ``max_attempts`` the event moves to the dead-letter
  stream ``lumi:<topic>.<group>.dlq``, itself a topic.
* ``lumi.idempotent_consumer`` remembers handled ids in Redis (``SET NX`` with a TTL), shared by
  every replica.

URL: ``redis://[[user]:password@]host[:port][/db][?options]`` (``rediss://`` for TLS). Lumi's
options: ``maxlen`` (entries kept per stream, approximate; default 1000000, ``0`` = unlimited),
``lease`` (visibility timeout, default ``30s``), ``prefix`` (key prefix, default ``lumi:``),
``window`` (parked events per group before reading pauses, default 10000), ``dedupe_ttl``
(default ``7d``), ``connect_timeout`` (how long start-up waits for the server, default ``30s``).
Other query options go to redis-py (``socket_timeout``, ``ssl_ca_certs``, ``ssl_certfile``,
``ssl_keyfile``, ``ssl_cert_reqs``, ``ssl_check_hostname``, ``health_check_interval``, ...). A
password belongs in the environment: write ``${REDIS_PASSWORD}`` in the URL (:mod:`._urls`).
A single server (or a primary with replicas) is supported, not Redis Cluster.
"""

from __future__ import annotations

import contextlib
import logging
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from lumi.brokers import _redis_scripts as lua
from lumi.brokers._redis_batch import Batcher
from lumi.brokers._redis_group import RedisConsumer, RedisGroup, encode_seq
from lumi.brokers._redis_reader import RedisReader
from lumi.brokers._urls import duration, expand_env, positive_int, redact, split_options
from lumi.brokers.base import (
    Backoff,
    Broker,
    DeadLetter,
    DeliveryHandler,
    Subscription,
    check_subscription,
    oldest_letters,
    split_dead_letter_topic,
)
from lumi.brokers.log_consumer import ConsumerOptions, Tracked
from lumi.model.envelope import Envelope
from lumi.model.errors import ConfigError, Unavailable
from lumi.pipeline.consumer_dedupe import DedupeStore
from lumi.retrying import wait_ready

log = logging.getLogger("lumi.brokers.redis")

_OURS = ("maxlen", "lease", "prefix", "window", "dedupe_ttl", "connect_timeout")
_REDIS_OPTIONS = frozenset(
    {
        "db", "socket_timeout", "socket_connect_timeout", "socket_keepalive", "retry_on_timeout",
        "max_connections", "health_check_interval", "client_name", "protocol", "timeout",
        "ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile",
        "ssl_password", "ssl_check_hostname", "ssl_min_version",
    }
)  # fmt: skip


class Keys:
    """Where everything lives: ``<prefix><topic>`` streams, group state beside them."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.registry = f"{prefix}~dead-letter-topics"

    def stream(self, topic: str) -> str:
        return self.prefix + topic

    def private(self, topic: str, group: str, what: str) -> str:
        return f"{self.prefix}{topic}>{group}:{what}"

    def dedupe(self, scope: str, event_id: str) -> str:
        return f"{self.prefix}~seen:{scope}:{event_id}"


class Scripts:
    """The Lua scripts, loaded once per client (redis-py re-sends them after a server restart)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.claim = client.register_script(lua.CLAIM)
        self.settle = client.register_script(lua.SETTLE)
        self.lease = client.register_script(lua.LEASE)
        self.replay = client.register_script(lua.REPLAY)
        self.order = client.register_script(lua.ORDER)


class RedisBroker(Broker):
    """Redis Streams as Lumi's event log; see the module docstring for the design."""

    name = "redis"

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "lumi:",
        maxlen: int = 1_000_000,
        backoff: Backoff | None = None,
        lease: float = 30.0,
        concurrency: int = 32,
        drain_timeout: float = 30.0,
        poll_interval: float = 1.0,
        window: int = 10_000,
        dedupe_ttl: float = 7 * 86400.0,
        connect_timeout: float = 30.0,
        client_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.url = url
        self.safe_url = redact(url)
        self.keys = Keys(prefix)
        self.maxlen = maxlen
        self.window = window
        self.dedupe_ttl = dedupe_ttl
        self.connect_timeout = connect_timeout
        self.options = ConsumerOptions(
            concurrency=concurrency,
            lease=lease,
            backoff=backoff or Backoff(initial=0.2, maximum=lease),
            drain_timeout=drain_timeout,
            poll_interval=poll_interval,
        )
        self._client_options = client_options or {}
        self._client: aioredis.Redis | None = None
        self._blocking: aioredis.Redis | None = None
        self._scripts: Scripts | None = None
        self._batcher: Batcher | None = None
        self._subscriptions: dict[str, list[Any]] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"RedisBroker({self.safe_url!r})"

    @classmethod
    def from_url(cls, url: str, *, app_dir: Path, **options: Any) -> RedisBroker:
        """``redis://…`` or ``rediss://…``; see the module docstring for the options."""
        expanded = expand_env(url)
        ours, rest = split_options(expanded, _OURS, broker="redis")
        unknown = sorted({name for name, _ in rest} - _REDIS_OPTIONS)
        if unknown:
            raise ConfigError(
                f"events: unknown option(s) {', '.join(map(repr, unknown))} of the redis broker "
                f"(Lumi's: {', '.join(_OURS)}; redis-py's: {', '.join(sorted(_REDIS_OPTIONS))})"
            )
        if "maxlen" in ours:
            options["maxlen"] = 0 if ours["maxlen"] == "0" else _int("maxlen", ours["maxlen"])
        for name in ("lease", "dedupe_ttl", "connect_timeout"):
            if name in ours:
                options[name] = duration(name, ours[name], broker="redis")
        if "window" in ours:
            options["window"] = _int("window", ours["window"])
        if "prefix" in ours:
            options["prefix"] = ours["prefix"]
        parts = urllib.parse.urlsplit(expanded)
        query = urllib.parse.urlencode(rest)
        client_url = urllib.parse.urlunsplit(
            (parts.scheme, parts.netloc, parts.path, query, parts.fragment)
        )
        return cls(client_url, **options)

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None or self._closed:
            raise RuntimeError(f"the redis broker ({self.safe_url}) is not started or is closed")
        return self._client

    @property
    def blocking(self) -> aioredis.Redis:
        """A second pool for blocking reads, so they never hold up publishes and claims."""
        assert self._blocking is not None
        return self._blocking

    def reader(self) -> aioredis.Redis:
        """A client of one connection of its own, for one consumer's blocking reads."""
        return aioredis.Redis.from_url(
            self.url, single_connection_client=True, **self._client_options
        )

    @property
    def batcher(self) -> Batcher:
        assert self._batcher is not None
        return self._batcher

    @property
    def scripts(self) -> Scripts:
        assert self._scripts is not None
        return self._scripts

    async def start(self) -> None:
        if self.started:
            return
        try:
            self._client = aioredis.Redis.from_url(self.url, **self._client_options)
            self._blocking = aioredis.Redis.from_url(self.url, **self._client_options)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"events: bad redis URL {self.safe_url}: {exc}") from None
        refused: list[str] = []

        async def ping() -> None:
            try:
                await self.client.ping()
            except (redis.exceptions.AuthenticationError, redis.exceptions.ResponseError) as exc:
                refused.append(str(exc))  # a wrong password does not heal by waiting

        try:
            await wait_ready(ping, f"redis at {self.safe_url}", timeout=self.connect_timeout)
        except Exception as exc:
            await self._disconnect()
            raise Unavailable(f"cannot reach redis at {self.safe_url}: {exc}") from None
        if refused:
            await self._disconnect()
            raise ConfigError(f"events: redis at {self.safe_url} refused Lumi: {refused[0]}")
        self._scripts = Scripts(self.client)
        self._batcher = Batcher(self.client)
        await super().start()

    async def _disconnect(self) -> None:
        for client in (self._client, self._blocking):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()

    async def aclose(self) -> None:
        if self._closed:
            return
        subscriptions = [s for subs in self._subscriptions.values() for s in subs]
        self._subscriptions.clear()
        for subscription in subscriptions:
            await subscription.aclose()
        self._closed = True
        await self._disconnect()

    # -- the contract --------------------------------------------------------------------------

    async def publish(self, topic: str, envelopes: Sequence[Envelope]) -> None:
        stream = self.keys.stream(topic)
        maxlen = self.maxlen or None
        if len(envelopes) == 1:
            await self.client.xadd(stream, _fields(envelopes[0]), maxlen=maxlen, approximate=True)
            return
        async with self.client.pipeline(transaction=True) as pipe:
            for envelope in envelopes:
                pipe.xadd(stream, _fields(envelope), maxlen=maxlen, approximate=True)
            await pipe.execute()

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
        subscription: Any
        if group is None:
            subscription = RedisReader(self, topic, handler, start=start)
            await subscription.start()
        else:
            await self._ensure_group(topic, group, "0" if start == "earliest" else "$")
            state = RedisGroup(self, topic, group)
            subscription = RedisConsumer(
                state, handler, topic=topic, group=group, max_attempts=max_attempts,
                options=self.options,
            )  # fmt: skip
            subscription.start()
        self._subscriptions.setdefault(topic, []).append(subscription)
        return Tracked(self._subscriptions, topic, subscription)

    async def _ensure_group(self, topic: str, group: str, position: str) -> None:
        """Create the group on the topic (at ``position``) and its ready stream, if missing."""
        for stream, at in (
            (self.keys.stream(topic), position),
            (self.keys.private(topic, group, "ready"), "0"),
        ):
            try:
                await self.client.xgroup_create(stream, group, id=at, mkstream=True)
            except redis.exceptions.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def dead_letters(
        self, topic: str | None = None, group: str | None = None, *, limit: int = 1000
    ) -> list[DeadLetter]:
        found: list[tuple[int, DeadLetter]] = []
        for name, origin in await self._dead_letter_topics(topic, group):
            entries = await self.client.xrange(self.keys.stream(name), count=limit)
            for entry_id, fields in _entries(entries):
                envelope = _envelope_of(fields)
                if envelope is not None:
                    letter = DeadLetter.from_envelope(*origin, envelope)
                    found.append((encode_seq("m", entry_id.decode()), letter))
        return oldest_letters(found, limit)

    async def replay(
        self,
        topic: str | None = None,
        group: str | None = None,
        *,
        event_ids: Sequence[str] | None = None,
    ) -> int:
        wanted = None if event_ids is None else set(event_ids)
        count = 0
        for name, (origin_topic, origin_group) in await self._dead_letter_topics(topic, group):
            await self._ensure_group(origin_topic, origin_group, "$")
            keys = self.keys
            dlq = keys.stream(name)
            for entry_id, fields in _entries(await self.client.xrange(dlq)):
                envelope = _envelope_of(fields)
                if envelope is None or (wanted is not None and envelope.id not in wanted):
                    continue
                revived = envelope.revived()
                key = revived.partitionkey
                count += await self.scripts.replay(
                    keys=[
                        keys.private(origin_topic, origin_group, "ready"),
                        keys.private(origin_topic, origin_group, "heads"),
                        keys.private(origin_topic, origin_group, "keyof"),
                        keys.private(origin_topic, origin_group, "meta"),
                        dlq,
                    ],
                    args=[
                        keys.private(origin_topic, origin_group, "parked:"), entry_id,
                        revived.to_json(), "1" if key is not None else "0", key or "",
                    ],
                )  # fmt: skip
            for subscription in self._subscriptions.get(origin_topic, ()):
                subscription.wake()
        return count

    async def _dead_letter_topics(
        self, topic: str | None, group: str | None
    ) -> list[tuple[str, tuple[str, str]]]:
        members: Any = await self.client.smembers(self.keys.registry)
        names = sorted(n.decode() for n in members)
        chosen = []
        for name in names:
            origin = split_dead_letter_topic(name)
            if origin is None or (topic and origin[0] != topic) or (group and origin[1] != group):
                continue
            chosen.append((name, origin))
        return chosen

    # -- idempotent consumers ------------------------------------------------------------------

    def dedupe_store(self) -> DedupeStore:
        """Handled event ids as Redis keys with a TTL: shared by every replica."""
        return self

    async def seen(self, scope: str, event_id: str) -> bool:
        return bool(await self.batcher.call("EXISTS", self.keys.dedupe(scope, event_id)))

    async def mark(self, scope: str, event_id: str) -> None:
        ttl = max(1, int(self.dedupe_ttl))
        await self.batcher.call("SET", self.keys.dedupe(scope, event_id), b"1", "EX", ttl)


def _fields(envelope: Envelope) -> dict[Any, Any]:
    fields: dict[Any, Any] = {"event": envelope.to_json()}
    if envelope.partitionkey is not None:
        fields["key"] = envelope.partitionkey
    return fields


def _entries(reply: Any) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """XRANGE's reply, typed (redis-py's own annotation is a union of every reply shape)."""
    return list(reply or ())


def _envelope_of(fields: dict[bytes, bytes]) -> Envelope | None:
    body = fields.get(b"event")
    if body is None:
        return None
    try:
        return Envelope.from_json(body)
    except ValueError:
        log.warning("skipping an entry that is not a CloudEvent in a dead-letter stream")
        return None


def _int(name: str, value: str) -> int:
    return positive_int(name, value, broker="redis")


__all__ = ["RedisBroker"]
