"""The consumer side shared by brokers that hand out messages and take acknowledgements (Kafka,
NATS JetStream): the broker feeds :class:`KeyedRunner` the messages it received, the runner keeps
the contract, and tells the broker's :class:`Settlement` what became of each one.

What the runner keeps, identically for every such broker:

* Order per partition key: of the messages with one key, only the oldest is handled; the next
  starts when it is settled (acknowledged or dead-lettered), so a retry holds back later events
  of its key. Messages without a key run concurrently, up to ``concurrency`` handlers at once.
* A failure is retried after the backoff — in this process (which keeps the key's order), or by
  the broker when :meth:`Settlement.retry_later` takes it (NATS naks a keyless message with a
  delay, so another replica may get it). After ``max_attempts`` attempts, or at once for
  :class:`Reject`, the event is dead-lettered.
* A message the broker has delivered ``max_attempts`` times before (its earlier consumers died
  in the middle) is dead-lettered without running again.
* :meth:`KeyedRunner.stop` lets running handlers finish, then gives the rest back.

Handlers run on a pool of at most ``concurrency`` worker tasks, started as load needs them, and
a retry waits on a timer rather than in a worker: a message costs no task of its own, which
is most of the cost of consuming a small event (measured with bench/broker_bench.py).

A broker that holds received messages undecoded may instead give the runner a ``source``: a
worker with nothing ready calls it for the next keyless message (the source submits keyed ones
itself) and runs it at once, and the broker calls :meth:`KeyedRunner.wake` when messages
arrive. A message then goes from the broker's buffer to its handler in one worker step, with no
queue between (bench/kafka_consume_cost.py under callgrind: 6 % fewer instructions per event).
"""

from __future__ import annotations

import abc
import asyncio
import collections
import logging
from collections.abc import Callable
from typing import Any

from lumi.brokers.base import Backoff, Delivery, DeliveryHandler, Reject
from lumi.brokers.log_consumer import lease_expired_reason, unreadable_envelope
from lumi.model.envelope import Envelope
from lumi.model.errors import LumiError

log = logging.getLogger("lumi.brokers")


class Inbound(Delivery):
    """One message received from the broker and not yet settled.

    ``event`` is None when the bytes are not an event (``error`` says why); ``delivered`` is
    how many times the broker delivered it before; ``token`` (and ``seq``) the broker's handle;
    ``tries`` counts the attempts made in this process. The message is itself the delivery of
    its first attempt here (an object less per event); a retry gets a :class:`Delivery` of its
    own, so a delivery never changes once handed out. Equality is identity. A plain
    ``__init__``: one is made per message, and a dataclass's would cost calls more."""

    __slots__ = ("delivered", "error", "event", "key", "raw", "seq", "token", "tries")

    def __init__(
        self,
        token: Any,
        envelope: Envelope | None,
        raw: bytes = b"",
        error: str = "",
        delivered: int = 0,
        topic: str = "",
        group: str | None = None,
        seq: int = 0,
    ) -> None:
        self.token = token
        self.seq = seq  # where the broker has it, if it says (Kafka: the offset in ``token``)
        self.event = envelope
        if envelope is not None:
            self.envelope = envelope
        self.raw = raw
        self.error = error
        self.delivered = delivered
        self.topic = topic  # the topic a delivery names (a replayed event: its original topic)
        self.group = group
        self.attempt = delivered + 1  # as the delivery of the first attempt here
        self.tries = 0
        self.key = None if envelope is None else envelope.partitionkey  # looked up once

    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"Inbound({self.token!r}, key={self.key!r}, tries={self.tries})"


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

    #: A broker whose acknowledgement needs no I/O (Kafka: it only moves a commit point)
    #: sets this to a plain function doing :meth:`ack`, which spares a coroutine per event.
    ack_now: Callable[[Inbound], None] | None = None


_SETTLED, _RETRY, _GIVEN_BACK = "settled", "retry", "given back"


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
        self.concurrency = concurrency
        self._queues: dict[str, collections.deque[Inbound]] = {}  # key → waiting (head active)
        self._ready: collections.deque[Inbound] = collections.deque()
        self._idle: list[asyncio.Future[None]] = []
        self._workers: set[asyncio.Task[None]] = set()
        self._running: dict[Inbound, asyncio.Task[None]] = {}
        self._timers: dict[Inbound, asyncio.TimerHandle] = {}
        self._dropping: set[Inbound] = set()  # being given back: no more attempts
        self._returned: set[Inbound] = set()  # of those, the ones that end unsettled
        self._progress = asyncio.Event()  # a message being given back finished running
        self._stopping = False
        self.size = 0  # messages submitted and not yet settled or given back
        #: called when a message is settled or given back (a broker that reads more when there
        #: is room); None: nothing to do
        self.on_settled: Callable[[], None] | None = None
        #: the next keyless message from the broker's buffer, or None (see the module docstring)
        self.source: Callable[[], Inbound | None] | None = None
        self._waking = False  # a worker was woken (or started) and has not run yet

    # -- intake --------------------------------------------------------------------------------

    def submit(self, item: Inbound) -> None:
        """Take a message; it runs now, or after the earlier messages with its key."""
        self.size += 1
        key = item.key
        if key is None:
            self._make_ready(item)
            return
        queue = self._queues.get(key)
        if queue is None:
            self._queues[key] = collections.deque([item])
            self._make_ready(item)
        else:
            queue.append(item)

    @property
    def runnable(self) -> int:
        """Messages running or ready to run (not waiting for their key or a retry)."""
        return len(self._ready) + len(self._running)

    def unsettled(self) -> list[Inbound]:
        """Every message taken and not yet settled (running, ready, waiting for its key or for
        a retry)."""
        items = dict.fromkeys([*self._running, *self._ready, *self._timers])
        for queue in self._queues.values():
            items.update(dict.fromkeys(queue))
        return list(items)

    def _make_ready(self, item: Inbound) -> None:
        # Queued in order and an idle worker woken (not handed the item): a worker that is
        # running takes the queue's head first, so events are mostly settled in the order
        # taken, which keeps the Kafka member's commit tracking on its cheap path.
        self._ready.append(item)
        self._wake_one()

    def wake(self) -> None:
        """Messages arrived at the source: a worker takes them. Workers wake one another as
        they take messages from the source (one wake-up pending at a time): a handler that
        does not suspend lets its worker run through the whole batch while the next one
        waits for its turn, and handlers that do suspend bring in worker after worker, up
        to ``concurrency``; waking a worker per message instead cost a futile wake-up and task
        step for every idle worker at every batch."""
        if not self._waking:
            self._wake_one()

    def _wake_one(self) -> None:
        while self._idle:
            waiter = self._idle.pop()
            if not waiter.done():
                waiter.set_result(None)
                self._waking = True
                return
        if len(self._workers) < self.concurrency and not self._stopping:
            worker = asyncio.create_task(self._work(), name=f"lumi-deliver-{self.topic}")
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)
            self._waking = True

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        me: Any = asyncio.current_task()
        ready, running, source = self._ready, self._running, self.source
        handler, ack_now, on_settled = self.handler, self.settlement.ack_now, self.on_settled
        max_attempts, dropping = self.max_attempts, self._dropping
        self._waking = False
        while not self._stopping:
            if ready:
                item = ready.popleft()
            else:
                found = source() if source is not None else None
                if found is None:
                    if ready:
                        continue  # the source submitted keyed messages, one of them ready
                    waiter: asyncio.Future[None] = loop.create_future()
                    self._idle.append(waiter)
                    await waiter
                    self._waking = False
                    continue  # another worker may have taken it meanwhile
                item = found
                self.size += 1
                if not self._waking:
                    self._wake_one()  # for the source's next message, should this handler wait
            running[item] = me
            outcome = _GIVEN_BACK
            try:
                envelope = item.event
                if envelope is None or item.delivered >= max_attempts:
                    outcome = await self._attempt(item)
                else:  # _attempt's usual case inline: a coroutine less per event
                    item.tries += 1
                    attempt = item.delivered + item.tries
                    delivery = item if item.tries == 1 else self._delivery(item, attempt)
                    try:
                        await handler(delivery)
                    except Exception as exc:
                        outcome = await self._failed(item, envelope, attempt, exc)
                    else:
                        if ack_now is not None:
                            ack_now(item)
                            outcome = _SETTLED
                        else:
                            outcome = await self._succeeded(item)
            except asyncio.CancelledError:
                raise  # stopping: _give_back accounts for it
            except Exception:
                # Recording the outcome failed (the broker is unreachable): the message was
                # not acknowledged, so the broker delivers it again — at-least-once holds.
                log.exception("settling an event of %s for %s failed", self.topic, self.group)
            finally:
                del running[item]
                if item in dropping:
                    self._progress.set()
            if outcome is _SETTLED and item.key is None:
                self.size -= 1  # _leave's keyless case inline: a call less per event
                if on_settled is not None:
                    on_settled()
            elif outcome is _SETTLED:
                self._leave(item)  # what _after does with a settled message, a call less
            else:
                self._after(item, outcome)

    # -- one attempt ---------------------------------------------------------------------------

    def _delivery(self, item: Inbound, attempt: int) -> Delivery:
        assert item.event is not None
        return Delivery(item.topic or self.topic, self.group, item.event, attempt)

    async def _attempt(self, item: Inbound) -> str:
        envelope = item.event
        if envelope is None:
            bad = unreadable_envelope(self.topic, 0, item.raw)
            await self._dead_letter(
                item, bad, f"not a valid event: {item.error}", item.delivered + 1
            )
            return _SETTLED
        if item.delivered >= self.max_attempts:
            reason = lease_expired_reason(item.delivered, "")
            await self._dead_letter(item, envelope, reason, item.delivered)
            return _SETTLED
        item.tries += 1
        attempt = item.delivered + item.tries
        try:
            await self.handler(self._delivery(item, attempt))
        except Exception as exc:
            return await self._failed(item, envelope, attempt, exc)
        return await self._succeeded(item)

    async def _succeeded(self, item: Inbound) -> str:
        ack_now = self.settlement.ack_now
        if ack_now is not None:
            ack_now(item)
        else:
            await self.settlement.ack(item)
        return _SETTLED

    async def _failed(self, item: Inbound, envelope: Envelope, attempt: int, exc: Exception) -> str:
        """The handler raised ``exc`` on ``attempt``: dead-letter, retry, or give it back."""
        topic = item.topic or self.topic
        if isinstance(exc, Reject):
            log.warning("event %s on %s rejected by %s: %s", envelope.id, topic, self.group, exc)
            await self._dead_letter(item, envelope, f"rejected: {exc}", attempt)
            return _SETTLED
        error = _describe(exc)
        log.warning(
            "event %s on %s failed for %s (attempt %d/%d): %s",
            envelope.id, topic, self.group, attempt, self.max_attempts, error,
        )  # fmt: skip
        if attempt >= self.max_attempts:
            reason = f"failed {attempt} time(s); last error: {error}"
            await self._dead_letter(item, envelope, reason, attempt)
            return _SETTLED
        if self._stopping or item in self._dropping:
            return _GIVEN_BACK
        delay = self.backoff.delay(attempt)
        if item.key is None and await self.settlement.retry_later(item, delay):
            return _SETTLED
        return _RETRY

    async def _dead_letter(self, item: Inbound, envelope: Envelope, reason: str, n: int) -> None:
        stored = envelope.dead_lettered(group=self.group, reason=reason, attempts=n)
        await self.settlement.dead_letter(item, stored)
        await self.settlement.ack(item)

    def _after(self, item: Inbound, outcome: str) -> None:
        if item in self._dropping and outcome != _SETTLED:
            self._returned.add(item)  # _give_back hands it back to the broker
        elif outcome == _RETRY and not self._stopping:
            delay = self.backoff.delay(item.delivered + item.tries)
            loop = asyncio.get_running_loop()
            self._timers[item] = loop.call_later(delay, self._retry_due, item)
        else:
            # settled; or failing to settle (the broker will deliver it again)
            self._leave(item)

    def _retry_due(self, item: Inbound) -> None:
        del self._timers[item]
        self._make_ready(item)

    def _leave(self, item: Inbound) -> None:
        """``item`` is no longer this runner's: free its key for the next message."""
        self.size -= 1
        key = item.key
        if key is not None:
            queue = self._queues.get(key)
            if queue and queue[0] is item:
                queue.popleft()
                if not queue:
                    del self._queues[key]
                elif not self._stopping:
                    self._make_ready(queue[0])
        if self.on_settled is not None:
            self.on_settled()

    # -- giving back ---------------------------------------------------------------------------

    async def drop(self, which: Callable[[Inbound], bool], timeout: float) -> None:
        """Give back the messages ``which`` selects (their partitions were revoked): handlers
        running for them may finish (for up to ``timeout`` seconds); the rest never run."""
        await self._give_back(which, timeout)

    async def stop(self, timeout: float) -> None:
        """Stop: running handlers may finish within ``timeout``; every other message is given
        back to the broker."""
        self._stopping = True
        for waiter in self._idle:
            waiter.cancel()
        self._idle.clear()
        await self._give_back(lambda item: True, timeout)
        for worker in list(self._workers):
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)

    async def _give_back(self, which: Callable[[Inbound], bool], timeout: float) -> None:
        chosen = [item for item in self.unsettled() if which(item)]
        if not chosen:
            return
        self._dropping.update(chosen)
        for item in chosen:  # not running: they never run here again
            if item not in self._running:
                timer = self._timers.pop(item, None)
                if timer is not None:
                    timer.cancel()
                self._returned.add(item)
        still_ready = [i for i in self._ready if i not in self._dropping]
        self._ready.clear()  # in place: workers hold the deque
        self._ready.extend(still_ready)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while any(item in self._running for item in chosen) and loop.time() < deadline:
            self._progress.clear()
            try:
                await asyncio.wait_for(self._progress.wait(), deadline - loop.time())
            except TimeoutError:
                break
        late = [item for item in chosen if item in self._running]
        tasks = [self._running[item] for item in late]
        for task in tasks:  # still running after the timeout
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._returned.update(late)
        given_back = [item for item in chosen if item in self._returned]
        self._returned.difference_update(chosen)
        self._dropping.difference_update(chosen)
        self.size -= len(given_back)
        gone = set(given_back)
        for key, queue in list(self._queues.items()):
            head = queue[0]
            kept = collections.deque(i for i in queue if i not in gone)
            if not kept:
                del self._queues[key]
                continue
            self._queues[key] = kept
            if kept[0] is not head and not self._stopping:
                self._make_ready(kept[0])  # the key's next message may run now
        if given_back:
            try:
                await self.settlement.release(given_back)
            except Exception:
                log.exception("giving back events of %s for %s failed", self.topic, self.group)
        if self.on_settled is not None:
            self.on_settled()


def _describe(exc: Exception) -> str:
    # A LumiError names its code already ("INTERNAL: ValueError: ..."); others: their type
    return str(exc) if isinstance(exc, LumiError) else f"{type(exc).__name__}: {exc}"
