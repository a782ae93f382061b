"""SQS queues read as stores: the SNS broker's archives, dead letters and redrive queues.

A queue cannot be read without taking what it returns, so :meth:`SqsStore.peek` receives every
visible message with a visibility timeout (hiding them from other readers for a moment), and
gives back at the end whatever the caller did not delete. Two readers peeking at the same time
each see only part of the queue; Lumi peeks only for a new group's first fill, ``lumi events
dlq ls`` and replays.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from lumi.model.context import new_id
from lumi.model.envelope import Envelope

_HIDE = 60  # seconds a peeked message stays hidden from other readers, at most


def order_key(message: dict[str, Any]) -> str:
    """Publish order: Lumi's ``lumi.seq`` attribute (publisher clock + index in its batch), else
    the time SQS received the message."""
    seq = message.get("MessageAttributes", {}).get("lumi.seq", {}).get("StringValue")
    sent = int(message.get("Attributes", {}).get("SentTimestamp", "0"))
    return seq or f"{sent * 1_000_000_000_000:025d}"


class SqsStore:
    """Reading, copying and deleting messages of queues, in batches of ten."""

    def __init__(self, sqs: Any) -> None:
        self.sqs = sqs
        self._tags: dict[str, dict[str, str]] = {}

    @contextlib.asynccontextmanager
    async def peek(
        self, url: str, *, limit: int | None = None
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Every visible message of ``url`` (up to ``limit``), oldest first; the ones still in
        the list at the end are made visible again."""
        messages: list[dict[str, Any]] = []
        try:
            while limit is None or len(messages) < limit:
                want = 10 if limit is None else min(10, limit - len(messages))
                reply = await self.sqs.receive_message(
                    QueueUrl=url,
                    MaxNumberOfMessages=want,
                    WaitTimeSeconds=0,
                    VisibilityTimeout=_HIDE,
                    MessageSystemAttributeNames=["All"],
                    MessageAttributeNames=["All"],
                )
                got = reply.get("Messages", [])
                if not got:
                    break
                messages.extend(got)
            messages.sort(key=order_key)
            yield messages
        finally:
            await self._visible(url, messages)

    async def _visible(self, url: str, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), 10):
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for i, m in enumerate(messages[start : start + 10])
            ]
            with contextlib.suppress(Exception):
                await self.sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)

    async def copy(self, messages: Sequence[dict[str, Any]], url: str, *, fifo: bool) -> None:
        """Send copies of ``messages`` (body and attributes) to ``url``, in order."""
        entries = []
        for message in messages:
            attributes = {
                name: value
                for name, value in message.get("MessageAttributes", {}).items()
                if value.get("DataType") == "String"
            }
            entry: dict[str, Any] = {"MessageBody": message["Body"]}
            if attributes:
                entry["MessageAttributes"] = attributes
            if fifo:
                key = attributes.get("partitionkey", {}).get("StringValue")
                unique = new_id()
                entry["MessageGroupId"] = key or unique
                entry["MessageDeduplicationId"] = unique
            entries.append(entry)
        await self._send(url, entries)

    async def send(self, url: str, envelopes: Sequence[Envelope], *, fifo: bool) -> None:
        """Send events straight to one queue (a replay reaches only the group that failed)."""
        entries = []
        for envelope in envelopes:
            entry: dict[str, Any] = {"MessageBody": envelope.to_json().decode()}
            attributes = {
                name: {"DataType": "String", "StringValue": value}
                for name in ("traceparent", "correlationid", "partitionkey")
                if (value := getattr(envelope, name))
            }
            if attributes:
                entry["MessageAttributes"] = attributes
            if fifo:
                unique = new_id()
                entry["MessageGroupId"] = envelope.partitionkey or unique
                entry["MessageDeduplicationId"] = unique
            entries.append(entry)
        await self._send(url, entries)

    async def _send(self, url: str, entries: list[dict[str, Any]]) -> None:
        for start in range(0, len(entries), 10):
            chunk = [{"Id": str(i), **e} for i, e in enumerate(entries[start : start + 10])]
            reply = await self.sqs.send_message_batch(QueueUrl=url, Entries=chunk)
            if reply.get("Failed"):
                raise RuntimeError(f"SQS refused messages for {url}: {reply['Failed']}")

    async def delete(self, url: str, messages: Sequence[dict[str, Any]]) -> None:
        for start in range(0, len(messages), 10):
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                for i, m in enumerate(messages[start : start + 10])
            ]
            await self.sqs.delete_message_batch(QueueUrl=url, Entries=entries)

    async def queues(self, prefix: str) -> list[tuple[str, dict[str, str]]]:
        """Every queue whose name starts with ``prefix``, with its tags."""
        urls: list[str] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"QueueNamePrefix": prefix, "MaxResults": 1000}
            if token:
                kwargs["NextToken"] = token
            reply = await self.sqs.list_queues(**kwargs)
            urls.extend(reply.get("QueueUrls", []))
            token = reply.get("NextToken")
            if not token:
                break
        found = []
        for url in urls:
            tags = self._tags.get(url)
            if tags is None:
                with contextlib.suppress(Exception):
                    tags = (await self.sqs.list_queue_tags(QueueUrl=url)).get("Tags", {})
                    self._tags[url] = tags
            found.append((url, tags or {}))
        return found
