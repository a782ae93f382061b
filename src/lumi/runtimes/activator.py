"""The instance pool behind a scale-to-zero service: start on demand, route, stop when idle.

An :class:`InstancePool` holds no instance until a call (or an event, :meth:`~InstancePool.wake`)
needs one. Each call goes to the least busy ready instance below the concurrency limit; when
every instance is full and fewer than ``max_instances`` exist, another is started; otherwise the
call waits (at most ``queue_timeout``, and never past its deadline) and then gets
RESOURCE_EXHAUSTED. An instance idle for ``idle_timeout`` is stopped gracefully (down to
``min_instances``); one that dies leaves the pool, and a call it had not received yet goes to
another. Instances are ordinary replicas of any :class:`~lumi.runtimes.base.Runtime` (local
processes by default), each serving one transport on a private loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import time
from collections.abc import Coroutine
from typing import Any

from lumi import transports
from lumi.config import FunctionConfig
from lumi.model.errors import DeadlineExceeded, NotSent, ResourceExhausted, Unavailable
from lumi.model.interface import ServiceInterface
from lumi.pipeline.call import Call
from lumi.runtimes.base import Output, Replica, ReplicaSpec, Runtime, StartError
from lumi.transports.base import Channel, ChannelSettings

log = logging.getLogger("lumi.function")

RETRY_START_AFTER = 1.0  # seconds calls fail fast after an instance could not start


@dataclasses.dataclass(eq=False)
class Instance:
    """One started (or starting) instance."""

    number: int
    started: float = dataclasses.field(default_factory=time.monotonic)
    replica: Replica | None = None
    channel: Channel | None = None
    in_flight: int = 0
    last_used: float = dataclasses.field(default_factory=time.monotonic)
    ready: bool = False
    stopping: bool = False

    @property
    def pid(self) -> int | None:
        return self.replica.pid if self.replica is not None else None


class InstancePool:
    """Instances of one service, started by ``runtime`` as calls need them."""

    def __init__(
        self,
        spec: ReplicaSpec,
        settings: FunctionConfig,
        runtime: Runtime,
        *,
        transport: str,
        interface: ServiceInterface,
        start_timeout: float,
        grace: float,
        output: Output,
        channel_settings: ChannelSettings | None = None,
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.runtime = runtime
        self.transport = transport
        self.interface = interface
        self.start_timeout = start_timeout
        self.grace = grace
        self.output = output
        self.channel_settings = channel_settings  # mTLS: the activator's certificate
        self.instances: list[Instance] = []
        self.cold_starts = 0
        self._numbers = itertools.count(1)
        self._changed = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()
        self._failure: tuple[float, str] | None = None  # when the last start failed, and why
        self._closed = False
        self._reaper = asyncio.create_task(self._reap())

    # -- calls ---------------------------------------------------------------------------------

    async def call(self, call: Call) -> bytes:
        """Forward ``call`` to an instance (starting one if needed) and return its answer."""
        for _ in range(3):  # an instance that vanished before the call left: try another
            instance = await self._acquire(call)
            assert instance.channel is not None
            instance.in_flight += 1
            try:
                return await instance.channel.call(call)
            except NotSent:
                await self._drop(instance, "it stopped answering")
            finally:
                instance.in_flight -= 1
                instance.last_used = time.monotonic()
                async with self._changed:
                    self._changed.notify_all()
        raise Unavailable(f"no instance of {self.spec.service} took the call")

    async def _acquire(self, call: Call) -> Instance:
        """A ready instance with room for one more call. While an instance is starting, a
        call waits for it up to the start timeout; when all are busy, up to queue_timeout."""
        arrived = time.monotonic()
        async with self._changed:
            while True:
                if self._closed:
                    raise Unavailable(f"{self.spec.service} is stopping")
                chosen = self._free()
                if chosen is not None:
                    return chosen
                if self._failure is not None and not self._starting():
                    failed_at, error = self._failure
                    if time.monotonic() - failed_at < RETRY_START_AFTER:
                        raise Unavailable(f"{self.spec.service} could not start: {error}")
                if len(self.instances) < self.settings.max_instances and not self._starting():
                    self._launch()
                allowed = self.start_timeout if self._starting() else self.settings.queue_timeout
                left = allowed - (time.monotonic() - arrived)
                remaining = call.metadata.remaining()
                if remaining is not None and remaining < left:
                    if remaining <= 0:
                        raise DeadlineExceeded(
                            f"{self.spec.service}: the deadline passed waiting for an instance"
                        )
                    left = remaining
                if left <= 0:
                    busy = len(self.instances)
                    raise ResourceExhausted(
                        f"{self.spec.service}: all {busy} instance(s) are busy "
                        f"({self.settings.concurrency} calls each) after "
                        f"{self.settings.queue_timeout:g}s",
                        {"instances": busy, "concurrency": self.settings.concurrency},
                    )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await self._changed.wait()

    def _free(self) -> Instance | None:
        ready = [
            i
            for i in self.instances
            if i.ready and not i.stopping and i.in_flight < self.settings.concurrency
        ]
        return min(ready, key=lambda i: i.in_flight) if ready else None

    def _starting(self) -> bool:
        return any(not i.ready for i in self.instances)

    async def wake(self) -> None:
        """Make sure an instance runs (an event arrived for it) and count it as activity."""
        now = time.monotonic()
        for instance in self.instances:
            instance.last_used = now
        async with self._changed:
            if not self._closed and all(i.stopping for i in self.instances):
                self._launch()

    async def warm(self) -> None:
        """Start instances up to ``min_instances``."""
        async with self._changed:
            while len(self.instances) < self.settings.min_instances:
                self._launch()

    # -- instances -----------------------------------------------------------------------------

    def _launch(self) -> None:
        instance = Instance(next(self._numbers))
        self.instances.append(instance)
        self._spawn(self._start(instance))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start(self, instance: Instance) -> None:
        transport = transports.get(self.transport)
        sock = transport.bind("127.0.0.1", 0)
        endpoint = transport.endpoint_of(sock)
        spec = dataclasses.replace(self.spec, replica=instance.number)
        prefix = f"#{instance.number} "
        try:
            instance.replica = await self.runtime.start(
                spec, {self.transport: sock}, lambda line: self.output(prefix + line)
            )
            await instance.replica.ready(self.start_timeout)
        except (StartError, OSError) as exc:
            self._failure = (time.monotonic(), str(exc))
            self.output(f"instance #{instance.number} could not start: {exc}")
            await self._remove(instance)
            return
        finally:
            sock.close()  # the instance has its own copy
        instance.channel = transport.channel(endpoint, self.interface, self.channel_settings)
        instance.ready = True
        instance.last_used = time.monotonic()
        self.cold_starts += 1
        self._failure = None
        self.output(
            f"instance #{instance.number} ready in {time.monotonic() - instance.started:.2f}s "
            f"(pid {instance.pid}; {len(self.instances)} running)"
        )
        self._spawn(self._watch(instance))
        async with self._changed:
            self._changed.notify_all()

    async def _watch(self, instance: Instance) -> None:
        assert instance.replica is not None
        code = await instance.replica.wait()
        if not instance.stopping:
            self.output(f"instance #{instance.number} exited with code {code}")
        await self._remove(instance)

    async def _remove(self, instance: Instance) -> None:
        if instance in self.instances:
            self.instances.remove(instance)
        if instance.channel is not None:
            await instance.channel.aclose()
            instance.channel = None
        async with self._changed:
            self._changed.notify_all()

    async def _drop(self, instance: Instance, why: str) -> None:
        self.output(f"instance #{instance.number}: {why}; taking it out")
        instance.stopping = True
        if instance.replica is not None:
            await instance.replica.kill()
        await self._remove(instance)

    async def _reap(self) -> None:
        """Stop instances that have been idle for ``idle_timeout``."""
        idle = self.settings.idle_timeout
        while True:
            await asyncio.sleep(min(1.0, idle / 4))
            now = time.monotonic()
            spare = len(self.instances) - self.settings.min_instances
            for instance in list(self.instances):
                if spare <= 0:
                    break
                if instance.ready and not instance.in_flight and now - instance.last_used >= idle:
                    spare -= 1
                    self._spawn(self._retire(instance, f"idle for {idle:g}s"))

    async def _retire(self, instance: Instance, why: str) -> None:
        instance.stopping = True
        self.output(f"instance #{instance.number} {why}; stopping it")
        if instance.replica is not None:
            await instance.replica.stop(self.grace)

    async def aclose(self, *, grace: float | None = None, kill: bool = False) -> None:
        """Stop every instance (gracefully unless ``kill``)."""
        self._closed = True
        self._reaper.cancel()
        async with self._changed:
            self._changed.notify_all()
        for instance in list(self.instances):
            instance.stopping = True
        replicas = [i.replica for i in self.instances if i.replica is not None]
        if kill:
            await asyncio.gather(*(r.kill() for r in replicas))
        else:
            await asyncio.gather(
                *(r.stop(self.grace if grace is None else grace) for r in replicas)
            )
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, self._reaper, return_exceptions=True)
        for instance in list(self.instances):
            await self._remove(instance)

    def state(self) -> dict[str, object]:
        """What ``GET /instances`` on the service's endpoint shows."""
        return {
            "instances": [
                {"number": i.number, "pid": i.pid, "ready": i.ready, "in_flight": i.in_flight}
                for i in self.instances
            ],
            "cold_starts": self.cold_starts,
            "max_instances": self.settings.max_instances,
            "concurrency": self.settings.concurrency,
        }
