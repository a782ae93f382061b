"""Commands issued in the same turn of the event loop, sent to Redis as one pipeline.

Many handlers finishing together would otherwise each wait for a round trip of their own on a
connection of their own. One pipeline costs one round trip, and its replies are handed back in
the order the commands were issued, so callers resume in that order too.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis


class Batcher:
    """``await batcher.call("EXISTS", key)``: one command, sent with the others of this turn."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._queue: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._scheduled = False
        self._task: asyncio.Future[None] | None = None

    async def call(self, *command: Any) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((command, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._send)
        return await future

    def _send(self) -> None:
        batch, self._queue = self._queue, []
        self._scheduled = False
        self._task = asyncio.ensure_future(self._run(batch))

    async def _run(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for command, _ in batch:
                    pipe.execute_command(*command)
                replies = await pipe.execute(raise_on_error=False)
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)
