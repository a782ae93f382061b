"""The threads a service's plain ``def`` methods run on: a bounded pool per service.

A thread cannot be stopped from outside, so a sync method that hangs keeps its thread after its
caller's deadline has passed. With one shared, unbounded queue (``asyncio.to_thread``), a few
hung calls fill the pool and every later call — of every service in the process — waits behind
them. Here each service has its own pool of ``size`` threads and admits at most ``size`` more
calls waiting for one; a call beyond that is refused at once with RESOURCE_EXHAUSTED (which the
caller sees and may retry later), and a waiting call whose deadline passes leaves the queue
without ever running.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import threading
from collections.abc import Callable
from typing import Any

from lumi.model.errors import ResourceExhausted

DEFAULT_THREADS = 16


class ThreadPool:
    """Runs the sync methods of one service on at most ``size`` threads."""

    def __init__(self, service: str, size: int = DEFAULT_THREADS, queue: int | None = None):
        if size < 1:
            raise ValueError(f"a thread pool needs at least one thread, not {size}")
        self.service = service
        self.size = size
        self.limit = size + (size if queue is None else queue)
        self.admitted = 0  # running or waiting for a thread
        self._lock = threading.Lock()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    async def run(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run ``func(*args, **kwargs)`` on a thread (with the caller's context variables)."""
        with self._lock:
            if self.admitted >= self.limit:
                busy = True
            else:
                busy = False
                self.admitted += 1
        if busy:
            raise ResourceExhausted(
                f"{self.service} is busy: its {self.size} threads for sync methods are taken and "
                f"{self.limit - self.size} calls already wait (services.{self.service}.threads)",
                {"threads": self.size},
            )
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                self.size, thread_name_prefix=f"lumi-{self.service}"
            )
        context = contextvars.copy_context()
        future = self._executor.submit(context.run, functools.partial(func, *args, **kwargs))
        # Called when the function ends or, if it never started, when the wait is cancelled.
        future.add_done_callback(self._release)
        return await asyncio.wrap_future(future)

    def _release(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self.admitted -= 1

    def shutdown(self) -> None:
        """Drop waiting calls; running ones finish on their own (threads cannot be stopped)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
