"""The NATS broker: events on NATS JetStream (nats-py).

``events = "nats://host1:4222,host2:4222?stream=LUMI&prefix=lumi&user=app&password=${NATS_PASSWORD}"``

How the contract maps onto JetStream:

* One stream (``stream``, default ``LUMI``) holds every topic as the subject
  ``<prefix>.<service>.<event>``; it is created on first use (file storage; ``max_age``,
  ``replicas`` and ``duplicate_window`` options). A publish waits for the stream's
  acknowledgement; each message carries ``Nats-Msg-Id`` = the event id, so a publish retried
  after a lost acknowledgement is stored once (within the duplicate window).
* A subscribing service is a durable pull consumer per topic (see :mod:`._nats_consumer`):
  ack, NAK with the backoff as delay, ``+WPI`` while handlers run, dead letters to the subject
  ``<prefix>.<topic>.<group>.dlq``. Replay publishes to ``<prefix>.<topic>.<group>.replay``
  (only that group's consumer reads it) and deletes the dead letter from the stream.
* Per-key order holds within a replica. JetStream has no key-partitioned consumer groups, so
  with several replicas two events with one key can be handled at once by two of them.
* :meth:`dedupe_store` is a JetStream key-value bucket, shared by every replica.

Credentials: ``user`` + ``password``, ``token``, ``creds`` (a .creds file) or ``nkey`` (a seed
file); secrets only as ``${VARIABLE}`` (see :mod:`._options`). TLS: ``tls_ca``, ``tls_cert``,
``tls_key`` (files), or ``tls=true`` with the system's trust store.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.js.api import DiscardPolicy, KeyValueConfig, StorageType, StreamConfig
from nats.js.errors import NotFoundError, ServiceUnavailableError

from lumi.brokers._cloudevents import STRUCTURED_CONTENT_TYPE, decode, encode, header_map
from lumi.brokers._nats_config import CONNECT_OPTIONS, connect_options, parse_url
from lumi.brokers._nats_consumer import PREFIX, NatsMember, NatsReader
from lumi.brokers.base import (
    Backoff,
    Broker,
    DeadLetter,
    DeliveryHandler,
    Subscription,
    check_subscription,
    dead_letter_topic,
    split_dead_letter_topic,
)
from lumi.model.context import new_id
from lumi.model.envelope import Envelope, EnvelopeError
from lumi.model.errors import ConfigError, Unavailable
from lumi.pipeline.consumer_dedupe import DedupeStore

log = logging.getLogger("lumi.brokers.nats")
T = TypeVar("T")


class NatsBroker(Broker):
    """Events on NATS JetStream; see the module docstring for how the contract maps onto it."""

    name = "nats"

    def __init__(
        self,
        servers: str | Sequence[str],
        *,
        stream: str = "LUMI",
        prefix: str = "lumi",
        storage: str = "file",
        replicas: int = 1,
        max_age: float | None = None,
        duplicate_window: float = 120.0,
        lease: float = 30.0,
        mode: str = "structured",
        backoff: Backoff | None = None,
        concurrency: int = 32,
        window: int = 1000,
        drain_timeout: float = 30.0,
        timeout: float = 10.0,
        name: str = "lumi",
        connect: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.servers = [servers] if isinstance(servers, str) else list(servers)
        self.stream = stream
        self.prefix = prefix
        self.storage = storage
        self.replicas = replicas
        self.max_age = max_age
        self.duplicate_window = duplicate_window
        self.lease = lease
        self.mode = mode
        self.backoff = backoff or Backoff(initial=0.2, maximum=60.0)
        self.concurrency = concurrency
        self.window = window
        self.drain_timeout = drain_timeout
        self.timeout = timeout
        self.client_name = name
        self._connect = connect or {}
        self._subscriptions: list[NatsMember | NatsReader] = []
        self._kv: Any = None
        self._closed = False

    @classmethod
    def from_url(cls, url: str, *, app_dir: Path, **options: Any) -> NatsBroker:
        """``nats://host:port[,host:port...][?option=value&...]`` (``app_dir`` is unused)."""
        servers, parsed = parse_url(url)
        connect = connect_options(parsed)
        settings = {k: v for k, v in parsed.items() if k not in CONNECT_OPTIONS}
        return cls(servers, connect=connect, **{**settings, **options})

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        if self.started:
            return
        self.nc = await self._connected()
        self.js = self.nc.jetstream(timeout=self.timeout)
        await self._ensure_stream()
        self.started = True

    async def _connected(self) -> Any:
        """A connected client; refused credentials are a ConfigError at once, and a server not
        reached within ``timeout`` is Unavailable (the client would otherwise retry forever:
        once connected it does, through any outage)."""
        where = ", ".join(self.servers)
        refused = asyncio.Event()
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            what = str(exc) or type(exc).__name__
            errors.append(what)
            if "authorization" in what.lower() or "authentication" in what.lower():
                refused.set()
            log.warning("NATS client (%s): %s", where, what)

        client = NatsClient()
        connecting = asyncio.ensure_future(
            client.connect(
                servers=self.servers, name=self.client_name,
                connect_timeout=max(1, round(self.timeout)), allow_reconnect=True,
                max_reconnect_attempts=-1, reconnect_time_wait=1,
                error_cb=on_error, **self._connect,
            )
        )  # fmt: skip
        told = asyncio.ensure_future(refused.wait())
        await asyncio.wait({connecting, told}, timeout=self.timeout, return_when="FIRST_COMPLETED")
        told.cancel()
        if connecting.done() and connecting.exception() is None:
            return client
        connecting.cancel()
        with contextlib.suppress(BaseException):
            await connecting
        with contextlib.suppress(Exception):
            await client.close()
        last = errors[-1] if errors else f"no answer within {self.timeout:g}s"
        if refused.is_set():
            raise ConfigError(
                f"events: NATS at {where} refused the credentials ({last}); check the "
                f"user/password/token/creds options"
            )
        raise Unavailable(f"cannot reach NATS at {where}: {last}")

    async def api(self, call: Callable[[], Awaitable[T]]) -> T:
        """A JetStream API call, retried while the server is briefly away (restarting, or
        the client reconnecting); Unavailable once ``3 * timeout`` seconds have passed."""
        deadline = time.monotonic() + 3 * self.timeout
        delay = 0.1
        while True:
            try:
                return await call()
            except (TimeoutError, NoRespondersError, ServiceUnavailableError) as exc:
                if time.monotonic() + delay > deadline:
                    what = str(exc) or type(exc).__name__
                    where = ", ".join(self.servers)
                    raise Unavailable(f"NATS JetStream at {where}: {what}") from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _ensure_stream(self) -> None:
        try:
            await self.api(lambda: self.js.stream_info(self.stream))
            return
        except NotFoundError:
            pass
        config = StreamConfig(
            name=self.stream,
            subjects=[f"{self.prefix}.>"],
            storage=StorageType.FILE if self.storage == "file" else StorageType.MEMORY,
            num_replicas=self.replicas,
            max_age=self.max_age,
            duplicate_window=self.duplicate_window,
            discard=DiscardPolicy.OLD,
        )
        try:
            await self.api(lambda: self.js.add_stream(config))
        except NatsError as exc:
            raise Unavailable(
                f"creating the JetStream stream {self.stream} failed: {exc}"
            ) from None

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        for subscription in list(self._subscriptions):
            await subscription.aclose()
        if self.started:
            with contextlib.suppress(Exception):
                await self.nc.drain()

    def _check_open(self) -> None:
        if not self.started or self._closed:
            raise RuntimeError(
                f"the NATS broker ({', '.join(self.servers)}) is not started or is closed"
            )

    # -- names ---------------------------------------------------------------------------------

    def subject_of(self, topic: str) -> str:
        if not topic or any(c in topic for c in " \t\r\n*>") or ".." in topic:
            raise ValueError(f"{topic!r} cannot be a NATS subject (no spaces, '*', '>' or '..')")
        return f"{self.prefix}.{topic}"

    @staticmethod
    def replay_topic(topic: str, group: str) -> str:
        return f"{topic}.{group}.replay"

    # -- publishing ----------------------------------------------------------------------------

    async def publish(self, topic: str, envelopes: Sequence[Envelope]) -> None:
        self._check_open()
        subject = self.subject_of(topic)
        if len(envelopes) == 1:  # the common case, as cheap as the client's own publish
            body, headers = encode(envelopes[0], mode=self.mode, prefix=PREFIX)
            headers["Nats-Msg-Id"] = envelopes[0].id
            await self._store_one(subject, body, headers)
            return
        copies: collections.Counter[str] = collections.Counter()
        messages = []
        for envelope in envelopes:
            body, headers = encode(envelope, mode=self.mode, prefix=PREFIX)
            # Copies of one event in one batch are meant: only a resent batch is a duplicate.
            n = copies[envelope.id]
            copies[envelope.id] += 1
            headers["Nats-Msg-Id"] = envelope.id if n == 0 else f"{envelope.id}#{n}"
            messages.append((subject, body, headers))
        await self._store(messages)

    async def _store_one(self, subject: str, body: bytes, headers: dict[str, str]) -> None:
        """Publish one message and wait for its acknowledgement (resent, same id, if none
        comes in time)."""
        for attempt in range(1, 4):
            try:
                await self.js.publish(subject, body, timeout=self.timeout, headers=headers)
                return
            except TimeoutError:
                log.warning(
                    "a publish to %s was not acknowledged in time (try %d)", subject, attempt
                )
            except NatsError as exc:
                raise Unavailable(f"publishing to NATS subject {subject} failed: {exc}") from None
        raise Unavailable(f"NATS did not acknowledge a publish to {subject} in time")

    async def _store(self, messages: list[tuple[str, bytes, dict[str, str]]]) -> None:
        """Publish and wait for every acknowledgement, resending (same ids: stored once) the
        ones not acknowledged in time."""
        pending = messages
        for attempt in range(1, 4):
            futures = [await self.js.publish_async(s, b, headers=h) for s, b, h in pending]
            done, _ = await asyncio.wait(futures, timeout=self.timeout)
            failed = []
            for message, future in zip(pending, futures, strict=True):
                if future not in done:
                    future.cancel()
                    failed.append(message)
                elif future.exception() is not None:
                    raise Unavailable(
                        f"publishing to NATS subject {message[0]} failed: {future.exception()}"
                    )
            if not failed:
                return
            log.warning("%d publish(es) not acknowledged in time (try %d)", len(failed), attempt)
            pending = failed
        raise Unavailable(f"NATS did not acknowledge {len(pending)} publish(es) in time")

    # -- consuming -----------------------------------------------------------------------------

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
        self._check_open()
        self.subject_of(topic)
        subscription: NatsMember | NatsReader
        if group is None:
            subscription = reader = NatsReader(self, topic, handler)
            await reader.begin(start)
        else:
            subscription = member = NatsMember(
                self, topic, group, handler, max_attempts=max_attempts, start=start
            )
            await member.begin()
        self._subscriptions.append(subscription)
        return subscription

    def forget(self, subscription: NatsMember | NatsReader) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    # -- dead letters --------------------------------------------------------------------------

    async def store_dead_letter(self, topic: str, group: str, stored: Envelope) -> None:
        subject = self.subject_of(dead_letter_topic(topic, group))
        headers = {"content-type": STRUCTURED_CONTENT_TYPE, "Nats-Msg-Id": f"dlq-{new_id()}"}
        await self._store_one(subject, stored.to_json(), headers)

    async def _letters(
        self, topic: str | None, group: str | None, limit: int
    ) -> list[tuple[int, DeadLetter]]:
        """(stream sequence, dead letter) pairs, oldest first."""
        middle = topic if topic else "*.*"
        wanted = f"{self.prefix}.{middle}.{group or '*'}.dlq"
        found: list[tuple[int, DeadLetter]] = []
        seq = 1
        while len(found) < limit:
            try:
                raw = await self.api(
                    lambda: self.js.get_msg(self.stream, seq=seq, next=True, subject=wanted)  # noqa: B023
                )
            except NotFoundError:
                break
            assert raw.seq is not None and raw.subject is not None
            seq = raw.seq + 1
            origin = split_dead_letter_topic(raw.subject[len(self.prefix) + 1 :])
            if origin is None:
                continue
            try:
                envelope = decode(raw.data or b"", header_map(raw.headers), prefix=PREFIX)
            except EnvelopeError as exc:
                log.warning("skipping message %d of %s: %s", raw.seq, raw.subject, exc)
                continue
            found.append((raw.seq, DeadLetter.from_envelope(*origin, envelope)))
        return found

    async def dead_letters(
        self, topic: str | None = None, group: str | None = None, *, limit: int = 1000
    ) -> list[DeadLetter]:
        self._check_open()
        return [letter for _, letter in await self._letters(topic, group, limit)]

    async def replay(
        self,
        topic: str | None = None,
        group: str | None = None,
        *,
        event_ids: Sequence[str] | None = None,
    ) -> int:
        self._check_open()
        wanted = None if event_ids is None else set(event_ids)
        count = 0
        for seq, letter in await self._letters(topic, group, 1_000_000):
            if wanted is not None and letter.envelope.id not in wanted:
                continue
            body, headers = encode(letter.envelope, mode=self.mode, prefix=PREFIX)
            headers["Nats-Msg-Id"] = f"replay-{new_id()}"
            target = self.subject_of(self.replay_topic(letter.topic, letter.group))
            await self._store_one(target, body, headers)
            await self.api(lambda: self.js.delete_msg(self.stream, seq))  # noqa: B023 (awaited now)
            count += 1
        return count

    # -- idempotent consumers ------------------------------------------------------------------

    def dedupe_store(self) -> DedupeStore:
        """A JetStream key-value bucket (``<stream>_DEDUPE``), shared by every replica."""
        return self

    async def _bucket(self) -> Any:
        if self._kv is None:
            name = f"{self.stream}_DEDUPE"
            try:
                self._kv = await self.js.key_value(name)
            except NotFoundError:
                ttl = self.max_age or 7 * 86400.0
                config = KeyValueConfig(bucket=name, ttl=ttl)
                self._kv = await self.api(lambda: self.js.create_key_value(config))
        return self._kv

    @staticmethod
    def _dedupe_key(scope: str, event_id: str) -> str:
        return hashlib.sha256(f"{scope}\0{event_id}".encode()).hexdigest()

    async def seen(self, scope: str, event_id: str) -> bool:
        """Whether ``event_id`` was marked handled in ``scope`` (by any replica)."""
        kv = await self._bucket()
        try:
            await kv.get(self._dedupe_key(scope, event_id))
        except NotFoundError:
            return False
        return True

    async def mark(self, scope: str, event_id: str) -> None:
        """Record ``event_id`` as handled in ``scope``."""
        kv = await self._bucket()
        await kv.put(self._dedupe_key(scope, event_id), b"1")
