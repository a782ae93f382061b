"""The consumer side shared by brokers that hand out messages and take acknowledgements (Kafka,
NATS JetStream): the broker feeds :class:`KeyedRunner` the messages it received, the runner keeps
the contract, and tells the broker's :class:`Settlement` what became of each one.

What the runner keeps, identically for every such broker:

* Order per partition key: of the messages with one key, only the oldest runs; the next starts
  when it is settled (acknowledged or dead-lettered), so a retry holds back later events of its
  key. Messages without a key run concurrently, up to ``concurrency`` handlers at once.
* A failure is retried after the backoff — in this process (which keeps the key's order), or by
  the broker when :meth:`Settlement.retry_later` takes it (NATS naks a keyless message with a
  delay, so another replica may get it). After ``max_attempts`` attempts, or at once for
  :class:`Reject`, the event is dead-lettered.
* A message the broker has delivered ``max_attempts`` times before (its earlier consumers died
  in the middle) is dead-lettered without running again.
* :meth:`KeyedRunner.stop` lets running handlers finish, then gives the rest back.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from lumi.brokers._consumer import lease_expired_reason, unreadable_envelope
from lumi.brokers.base import Backoff, Delivery, DeliveryHandler, Reject
from lumi.errors import LumiError
from lumi.events import Envelope

log = logging.getLogger("lumi.brokers")


@dataclasses.dataclass(slots=True, eq=False)
class Inbound:
    """One message received from the broker and not yet settled.

    ``envelope`` is None when the bytes are not an event (``error`` says why); ``delivered`` is
    how many times the broker delivered it before; ``token`` is the broker's handle for it."""

    token: Any
    envelope: Envelope | None
    raw: bytes = b""
    error: str = ""
    delivered: int = 0
    topic: str = ""  # the topic a delivery names (a replayed event: its original topic)

    @property
    def key(self) -> str | None:
        return None if self.envelope is None else self.envelope.partitionkey


class Settlement(abc.ABC):
    """What a broker does with the outcome of a message."""

    @abc.abstractmethod
    async def ack(self, item: Inbound) -> None:
        """The event was handled (or dead-lettered): never deliver it to this group again."""

    @abc.abstractmethod
    async def dead_letter(self, item: Inbound, stored: Envelope) -> None:
        """Store ``stored`` (the event with its dead-letter extensions) on the group's
        dead-letter topic; the runner acknowledges the message afterwards."""

    async def retry_later(self, item: Inbound, delay: float) -> bool:
        """Hand a failed keyless message back for redelivery after ``delay``; True if the broker
        took it. By default the runner retries in this process."""
        return False

    async def release(self, items: list[Inbound]) -> None:  # noqa: B027 (optional hook)
        """Give back messages that were not handled to the end (the consumer is stopping)."""


class _State:
    WAITING, RUNNING, BACKOFF = "waiting", "running", "backoff"


class KeyedRunner:
    """Runs deliveries of one (topic, group) member; see the module docstring."""

    def __init__(
        self,
        handler: DeliveryHandler,
        settlement: Settlement,
        *,
        topic: str,
        group: str,
        max_attempts: int,
        backoff: Backoff,
        concurrency: int = 32,
    ) -> None:
        self.handler = handler
        self.settlement = settlement
        self.topic = topic
        self.group = group
        self.max_attempts = max_attempts
        self.backoff = backoff
        self._slots = asyncio.Semaphore(concurrency)
        self._queues: dict[str, collections.deque[Inbound]] = {}
        self._tasks: dict[Inbound, asyncio.Task[None]] = {}
        self._state: dict[Inbound, str] = {}
        self._dropping: set[Inbound] = set()  # being given back: no more attempts
        self._unsettled: set[Inbound] = set()  # of those, the ones that ended unsettled
        self._stopping = False
        self.size = 0  # messages submitted and not yet settled or given back
        self.on_settled: Callable[[], None] = lambda: None

    def submit(self, item: Inbound) -> None:
        """Take a message; it runs now, or after the earlier messages with its key."""
        self.size += 1
        key = item.key
        if key is None:
            self._start(item)
            return
        queue = self._queues.get(key)
        if queue is None:
            self._queues[key] = collections.deque([item])
            self._start(item)
        else:
            queue.append(item)

    def unsettled(self) -> list[Inbound]:
        """Every message taken and not yet settled (running, waiting for its key, or waiting
        for a retry)."""
        items = list(self._tasks)
        for queue in self._queues.values():
            items.extend(i for i in queue if i not in self._tasks)
        return items

    def _start(self, item: Inbound) -> None:
        self._state[item] = _State.WAITING
        self._tasks[item] = asyncio.create_task(self._run(item), name=f"lumi-deliver-{self.topic}")

    async def _run(self, item: Inbound) -> None:
        settled = False
        try:
            settled = await self._attempts(item)
        except asyncio.CancelledError:
            pass  # stopped: given back below
        except Exception:
            # Recording the outcome failed (the broker is unreachable): the message was not
            # acknowledged, so the broker delivers it again — at-least-once still holds.
            log.exception("settling an event of %s for %s failed", self.topic, self.group)
        finally:
            self._tasks.pop(item, None)
            self._state.pop(item, None)
            self._finish(item, settled)

    def _finish(self, item: Inbound, settled: bool) -> None:
        self.size -= 1
        if not settled and item in self._dropping:
            self._unsettled.add(item)
        key = item.key
        if key is not None:
            queue = self._queues.get(key)
            if queue and queue[0] is item:
                queue.popleft()
                if queue and not self._stopping:
                    self._start(queue[0])
                elif not queue:
                    del self._queues[key]
        self.on_settled()

    async def _attempts(self, item: Inbound) -> bool:
        """Run ``item`` until it is settled; False if it was given back instead."""
        envelope = item.envelope
        if envelope is None:
            bad = unreadable_envelope(self.topic, 0, item.raw)
            reason = f"not a valid event: {item.error}"
            await self._dead_letter(item, bad, reason, item.delivered + 1)
            return True
        if item.delivered >= self.max_attempts:
            await self._dead_letter(
                item, envelope, lease_expired_reason(item.delivered, ""), item.delivered
            )
            return True
        attempt = item.delivered + 1
        topic = item.topic or self.topic
        while True:
            async with self._slots:
                self._state[item] = _State.RUNNING
                try:
                    await self.handler(Delivery(topic, self.group, envelope, attempt))
                except Reject as exc:
                    log.warning(
                        "event %s on %s rejected by %s: %s", envelope.id, topic, self.group, exc
                    )
                    await self._dead_letter(item, envelope, f"rejected: {exc}", attempt)
                    return True
                except Exception as exc:
                    error = _describe(exc)
                    log.warning(
                        "event %s on %s failed for %s (attempt %d/%d): %s",
                        envelope.id, topic, self.group, attempt, self.max_attempts, error,
                    )  # fmt: skip
                    if attempt >= self.max_attempts:
                        reason = f"failed {attempt} time(s); last error: {error}"
                        await self._dead_letter(item, envelope, reason, attempt)
                        return True
                else:
                    await self.settlement.ack(item)
                    return True
                finally:
                    self._state[item] = _State.BACKOFF
            if self._stopping or item in self._dropping:
                return False
            delay = self.backoff.delay(attempt)
            if item.key is None and await self.settlement.retry_later(item, delay):
                return True
            await asyncio.sleep(delay)
            attempt += 1

    async def _dead_letter(self, item: Inbound, envelope: Envelope, reason: str, n: int) -> None:
        stored = envelope.dead_lettered(group=self.group, reason=reason, attempts=n)
        await self.settlement.dead_letter(item, stored)
        await self.settlement.ack(item)

    async def drop(self, which: Callable[[Inbound], bool], timeout: float) -> None:
        """Give back the messages ``which`` selects (their partitions were revoked): handlers
        running for them may finish (for up to ``timeout`` seconds); the rest never run."""
        await self._give_back(which, timeout)

    async def stop(self, timeout: float) -> None:
        """Stop: running handlers may finish within ``timeout``; every other message is given
        back to the broker."""
        self._stopping = True
        await self._give_back(lambda item: True, timeout)

    async def _give_back(self, which: Callable[[Inbound], bool], timeout: float) -> None:
        waiting: list[Inbound] = []
        for key, queue in list(self._queues.items()):
            kept = collections.deque(i for i in queue if i in self._tasks or not which(i))
            waiting.extend(i for i in queue if i not in self._tasks and which(i))
            if kept:
                self._queues[key] = kept
            else:
                del self._queues[key]
        self.size -= len(waiting)
        chosen = {item: task for item, task in self._tasks.items() if which(item)}
        self._dropping.update(chosen)
        for item, task in chosen.items():
            if self._state.get(item) != _State.RUNNING:
                task.cancel()  # waiting for a slot or sleeping before a retry
        if chosen:
            _, late = await asyncio.wait(chosen.values(), timeout=timeout)
            for task in late:
                task.cancel()
            for task in late:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        given_back = waiting + [item for item in chosen if item in self._unsettled]
        self._dropping.difference_update(chosen)
        self._unsettled.difference_update(chosen)
        if given_back:
            try:
                await self.settlement.release(given_back)
            except Exception:
                log.exception("giving back events of %s for %s failed", self.topic, self.group)


def _describe(exc: Exception) -> str:
    # A LumiError names its code already ("INTERNAL: ValueError: ..."); others: their type
    return str(exc) if isinstance(exc, LumiError) else f"{type(exc).__name__}: {exc}"
