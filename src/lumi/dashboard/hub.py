"""Fan-out of live updates to the browsers, and the server-sent-event stream carrying them."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

Message = tuple[str, Any]
"""``(event name, JSON-able data)``."""

_KEEPALIVE = 15.0


class Hub:
    """Subscribers get every message published after they joined, through bounded queues (a
    browser that stops reading loses old messages, it never makes the server buffer more)."""

    def __init__(self, maxsize: int = 1000) -> None:
        self.maxsize = maxsize
        self._queues: set[asyncio.Queue[Message | None]] = set()

    def publish(self, event: str, data: Any) -> None:
        for queue in list(self._queues):
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait((event, data))

    @property
    def listeners(self) -> int:
        return len(self._queues)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Message | None]]:
        queue: asyncio.Queue[Message | None] = asyncio.Queue(self.maxsize)
        self._queues.add(queue)
        try:
            yield queue
        finally:
            self._queues.discard(queue)

    def close(self) -> None:
        """End every subscriber's stream."""
        for queue in list(self._queues):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)


def encode(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n".encode()


async def stream(
    request: web.Request,
    hub: Hub,
    *,
    initial: list[Message] | None = None,
    keep: Callable[[Message], bool] = lambda _m: True,
) -> web.StreamResponse:
    """Answer ``request`` with an SSE stream: ``initial`` messages, then the hub's (those
    ``keep`` accepts) until the browser goes away or the hub closes."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    async with hub.subscribe() as queue:
        try:
            for first in initial or []:
                await response.write(encode(*first))
            while True:
                try:
                    message: Message | None = await asyncio.wait_for(queue.get(), _KEEPALIVE)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if message is None:
                    break
                if keep(message):
                    await response.write(encode(*message))
        except (ConnectionResetError, ConnectionError):
            pass
    return response
