"""An ephemeral reader of a Redis stream (``group=None``, e.g. ``lumi events tail``).

It keeps no state in Redis: it follows the stream with blocking ``XREAD`` from a position held
in memory, and a handler that fails is logged and skipped, as on every broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from lumi.brokers.base import Delivery, DeliveryHandler, Subscription
from lumi.model.envelope import Envelope

if TYPE_CHECKING:
    from lumi.brokers.redis import RedisBroker

log = logging.getLogger("lumi.brokers.redis")


class RedisReader(Subscription):
    """Follows ``topic`` from its oldest entry (``start="earliest"``) or from now."""

    def __init__(
        self, broker: RedisBroker, topic: str, handler: DeliveryHandler, *, start: str
    ) -> None:
        self.broker = broker
        self.topic = topic
        self.stream = broker.keys.stream(topic)
        self.handler = handler
        self.position = "0-0" if start == "earliest" else "$"
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.position == "$":
            # Pin "now" before returning, so an event published right after subscribe is seen.
            last = _streams(await self.broker.client.xrevrange(self.stream, count=1))
            self.position = last[0][0].decode() if last else "0-0"
        self._task = asyncio.create_task(self._run(), name=f"lumi-redis-read-{self.topic}")

    def wake(self) -> None:
        """Blocking reads need no wake-ups (the broker calls this after a replay)."""

    async def _run(self) -> None:
        block_ms = max(1, int(self.broker.options.poll_interval * 1000))
        while not self._stopping:
            try:
                got = await self.broker.blocking.xread(
                    {self.stream: self.position}, count=256, block=block_ms
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("reading %s failed: %s", self.topic, exc)
                await asyncio.sleep(self.broker.options.poll_interval)
                continue
            for _, entries in _streams(got):
                for entry_id, fields in entries:
                    self.position = entry_id.decode()
                    body = fields.get(b"event")
                    if body is None:
                        continue
                    try:
                        envelope = Envelope.from_json(body)
                        await self.handler(Delivery(self.topic, None, envelope, 1))
                    except Exception:
                        log.exception("a reader of %s failed on entry %s", self.topic, entry_id)

    async def aclose(self) -> None:
        # A flag as well as cancel(): redis-py can swallow a CancelledError during a read.
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _streams(reply: Any) -> list[tuple[Any, list[tuple[bytes, dict[bytes, bytes]]]]]:
    """XREAD's reply, typed (redis-py's own annotation is a union of every reply shape)."""
    return list(reply or ())
