"""Consuming one SQS queue: a member of a consumer group, or an ephemeral reader (``group=None``).

SQS decides what is visible, so this loop is simpler than the log brokers' one: long-poll for up
to ten messages at a time (never more than free handler slots), run handlers concurrently, and

* on success delete the message (deletes of one turn of the event loop go as one batch);
* on failure make it visible again after the backoff (``ChangeMessageVisibility``; SQS counts in
  whole seconds, so a delay under a second is waited here, holding the message, then it is made
  visible at once); on a FIFO queue its message group (the partition key) stays blocked meanwhile;
* after ``max_attempts`` attempts, or on :class:`Reject`, hand it to ``dead_letter`` and delete it.

Attempts are SQS's ``ApproximateReceiveCount``. While a handler runs its message's visibility is
extended every third of the lease. A message received again while its handler still runs (a
standard queue may hand one message out twice, and a lease renewal can fail) starts no second
handler in this member: its newest receipt handle, the one SQS deletes by, replaces the older.
Closing stops polling (waiting for the poll in flight, whose messages are made visible again),
lets running handlers finish, then releases the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from lumi.brokers.base import Delivery, DeliveryHandler, Reject, Subscription
from lumi.brokers.log_consumer import ConsumerOptions
from lumi.model.envelope import Envelope, EnvelopeError
from lumi.model.errors import LumiError

log = logging.getLogger("lumi.brokers.sns")

DeadLetterFn = Callable[[Envelope, str, int], Awaitable[None]]
"""``dead_letter(envelope, reason, attempts)``: store the event in the group's dead letters."""


@dataclasses.dataclass(frozen=True, slots=True)
class QueueOptions:
    """The consumer loop's settings plus SQS's long-poll wait (whole seconds, at most 20)."""

    consumer: ConsumerOptions
    wait: int = 5


class SqsConsumer(Subscription):
    """Consumes ``queue_url`` as a member of ``group`` (or as a reader when ``group`` is None)."""

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        handler: DeliveryHandler,
        *,
        topic: str,
        group: str | None,
        max_attempts: int,
        options: QueueOptions,
        dead_letter: DeadLetterFn | None,
    ) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.handler = handler
        self.topic = topic
        self.group = group
        self.max_attempts = max_attempts
        self.options = options
        self.dead_letter = dead_letter
        self._inflight: dict[str, asyncio.Task[None]] = {}  # message id → handler task
        self._receipts: dict[str, str] = {}  # message id → its newest receipt handle
        self._slot = asyncio.Event()
        self._closing = False
        self._poll_task: asyncio.Task[None] | None = None
        self._lease_task: asyncio.Task[None] | None = None
        self._deletes: list[tuple[str, asyncio.Future[None]]] = []
        self._delete_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        name = f"lumi-sqs-{self.topic}-{self.group}"
        self._poll_task = asyncio.create_task(self._poll(), name=name)
        self._lease_task = asyncio.create_task(self._renew(), name=f"{name}-leases")

    def closing(self) -> bool:
        """Whether aclose() began (set while this loop awaited)."""
        return self._closing

    def wake(self) -> None:
        """Long polls need no wake-ups (the broker calls this after a replay)."""

    async def _poll(self) -> None:
        opts = self.options.consumer
        while not self._closing:
            free = opts.concurrency - len(self._inflight)
            if free <= 0:
                self._slot.clear()
                await self._slot.wait()
                continue
            try:
                reply = await self.sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=min(10, free),
                    WaitTimeSeconds=self.options.wait,
                    VisibilityTimeout=_seconds(opts.lease),
                    MessageSystemAttributeNames=["ApproximateReceiveCount", "MessageGroupId"],
                    MessageAttributeNames=["All"],
                )
            except Exception as exc:
                if self.closing():
                    break
                log.warning("receiving from %s for %s failed: %s", self.topic, self.group, exc)
                await asyncio.sleep(opts.poll_interval)
                continue
            messages = reply.get("Messages", [])
            if self.closing():
                await self._release([m["ReceiptHandle"] for m in messages])
                break
            # One receive may hold several messages of one FIFO message group (one key): they
            # run one after the other, and a retry gives the rest back.
            chains: dict[str, list[dict[str, Any]]] = {}
            for message in messages:
                ident = message["MessageId"]
                again = ident in self._receipts  # received again while its handler runs
                self._receipts[ident] = message["ReceiptHandle"]
                if again:
                    log.debug("message %s on %s received again while in flight", ident, self.topic)
                    continue
                key = message.get("Attributes", {}).get("MessageGroupId") or ident
                chains.setdefault(key, []).append(message)
            for chain in chains.values():
                task = asyncio.create_task(self._run_chain(chain))
                for message in chain:
                    self._inflight[message["MessageId"]] = task

    async def _run_chain(self, chain: list[dict[str, Any]]) -> None:
        for index, message in enumerate(chain):
            ident = message["MessageId"]
            try:
                settled = await self._attempt(message)
            except Exception:
                # Recording the outcome failed: the lease runs out and SQS delivers it again.
                log.exception("recording the outcome of a message on %s failed", self.topic)
                settled = False
            finally:
                self._inflight.pop(ident, None)
                self._receipts.pop(ident, None)
                self._slot.set()
            if not settled:
                rest = [m["MessageId"] for m in chain[index + 1 :]]
                for later in rest:
                    self._inflight.pop(later, None)
                await self._release([self._receipts.pop(later) for later in rest])
                return

    async def _attempt(self, message: dict[str, Any]) -> bool:
        """Handle one message; False if it will be delivered again (a retry)."""
        ident = message["MessageId"]
        attempt = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        try:
            envelope = Envelope.from_json(message["Body"])
        except EnvelopeError as exc:
            log.warning("a message on %s is not a valid event: %s", self.topic, exc)
            if self.dead_letter is not None:
                await self.dead_letter(
                    _unreadable(self.topic, message), f"not a valid event: {exc}", attempt
                )
            await self._delete(self._receipts[ident])
            return True
        delivery = Delivery(self.topic, self.group, envelope, attempt)
        if self.group is None:  # a reader: no retries, no dead letters
            try:
                await self.handler(delivery)
            except Exception:
                log.exception("a reader of %s failed on event %s", self.topic, envelope.id)
            await self._delete(self._receipts[ident])
            return True
        assert self.dead_letter is not None
        try:
            await self.handler(delivery)
        except Reject as exc:
            log.warning(
                "event %s on %s rejected by %s: %s", envelope.id, self.topic, self.group, exc
            )
            await self.dead_letter(envelope, f"rejected: {exc}", attempt)
            await self._delete(self._receipts[ident])
        except Exception as exc:
            error = str(exc) if isinstance(exc, LumiError) else f"{type(exc).__name__}: {exc}"
            log.warning(
                "event %s on %s failed for %s (attempt %d/%d): %s",
                envelope.id, self.topic, self.group, attempt, self.max_attempts, error,
            )  # fmt: skip
            if attempt >= self.max_attempts:
                reason = f"failed {attempt} time(s); last error: {error}"
                await self.dead_letter(envelope, reason, attempt)
                await self._delete(self._receipts[ident])
            else:
                await self._retry(ident, self.options.consumer.backoff.delay(attempt))
                return False
        else:
            await self._delete(self._receipts[ident])
        return True

    async def _retry(self, ident: str, delay: float) -> None:
        if delay < 1.0:
            await asyncio.sleep(delay)  # SQS counts whole seconds; hold the message meanwhile
        # No longer in flight here: once visible it may come back to this member at once.
        receipt = self._receipts.pop(ident)
        await self.sqs.change_message_visibility(
            QueueUrl=self.queue_url,
            ReceiptHandle=receipt,
            VisibilityTimeout=0 if delay < 1.0 else min(43200, round(delay)),
        )

    async def _delete(self, receipt: str) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._deletes.append((receipt, done))
        if len(self._deletes) == 1:
            asyncio.get_running_loop().call_soon(self._start_deletes)
        await done

    def _start_deletes(self) -> None:
        self._delete_task = asyncio.ensure_future(self._flush_deletes())

    async def _flush_deletes(self) -> None:
        batch, self._deletes = self._deletes, []
        for start in range(0, len(batch), 10):
            chunk = batch[start : start + 10]
            try:
                reply = await self.sqs.delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[{"Id": str(i), "ReceiptHandle": r} for i, (r, _) in enumerate(chunk)],
                )
                failed = {entry["Id"]: entry for entry in reply.get("Failed", [])}
            except Exception as exc:
                for _, done in chunk:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for i, (_, done) in enumerate(chunk):
                if done.done():
                    continue
                if str(i) in failed:
                    done.set_exception(RuntimeError(f"delete failed: {failed[str(i)]}"))
                else:
                    done.set_result(None)

    async def _renew(self) -> None:
        lease = self.options.consumer.lease
        while True:
            await asyncio.sleep(lease / 3)
            receipts = list(self._receipts.values())
            for start in range(0, len(receipts), 10):
                entries = [
                    {"Id": str(i), "ReceiptHandle": r, "VisibilityTimeout": _seconds(lease)}
                    for i, r in enumerate(receipts[start : start + 10])
                ]
                try:
                    await self.sqs.change_message_visibility_batch(
                        QueueUrl=self.queue_url, Entries=entries
                    )
                except Exception as exc:
                    log.warning("renewing leases on %s failed: %s", self.topic, exc)

    async def _release(self, receipts: list[str]) -> None:
        for start in range(0, len(receipts), 10):
            entries = [
                {"Id": str(i), "ReceiptHandle": r, "VisibilityTimeout": 0}
                for i, r in enumerate(receipts[start : start + 10])
            ]
            with contextlib.suppress(Exception):
                await self.sqs.change_message_visibility_batch(
                    QueueUrl=self.queue_url, Entries=entries
                )

    async def aclose(self) -> None:
        """Stop polling (after the poll in flight), let handlers finish (up to the drain
        timeout), then cancel the rest and make their messages visible again."""
        if self._closing:
            return
        self._closing = True
        self._slot.set()
        if self._poll_task is not None:
            await self._poll_task
        if self._inflight:
            await asyncio.wait(
                list(self._inflight.values()), timeout=self.options.consumer.drain_timeout
            )
        unfinished = list(self._inflight.items())
        receipts = [self._receipts[ident] for ident, _ in unfinished if ident in self._receipts]
        for task in {task for _, task in unfinished}:
            task.cancel()
        for task in {task for _, task in unfinished}:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._lease_task is not None:
            self._lease_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lease_task
        await self._release(receipts)


def _seconds(value: float) -> int:
    return max(0, min(43200, round(value)))


def _unreadable(topic: str, message: dict[str, Any]) -> Envelope:
    from lumi.brokers.log_consumer import unreadable_envelope

    return unreadable_envelope(topic, 0, str(message.get("Body", "")).encode())
