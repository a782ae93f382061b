"""An SQS standard queue may hand a message out again while its handler still runs (SQS's
at-least-once delivery; a lease renewal that failed does the same): the member that holds it
must not run a second handler, and must delete it by the newest receipt handle. Real
moto_server; the second receipt is made the way SQS makes it, by the message becoming visible."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from lumi.brokers._sqs_consumer import SqsConsumer
from lumi.brokers.base import Delivery
from lumi.brokers.sns import SnsBroker
from lumi.testing import wait_until
from tests.conformance.broker_contract import FAST, envelope, topic_name
from tests.engines.moto import MotoServer

pytestmark = pytest.mark.slow


async def test_a_message_received_again_in_flight_runs_one_handler(
    moto_server: MotoServer,
) -> None:
    broker = SnsBroker(
        region="us-east-1",
        endpoint=moto_server.endpoint,
        prefix=f"t{uuid.uuid4().hex[:8]}-",
        fifo=False,
        backoff=FAST,
        wait=1,
    )
    await broker.start()
    try:
        topic = topic_name()
        calls: list[Delivery] = []
        release = asyncio.Event()

        async def handler(delivery: Delivery) -> None:
            calls.append(delivery)
            await release.wait()

        subscription = await broker.subscribe(topic, "Group", handler)
        consumer = subscription.inner  # type: ignore[attr-defined]
        assert isinstance(consumer, SqsConsumer)
        await broker.publish(topic, [envelope(topic, {"n": 1})])
        await wait_until(lambda: len(calls) == 1, timeout=30, message="the first delivery")
        (first,) = consumer._receipts.values()
        # What SQS does when it hands the message out again: it becomes visible, and the next
        # receive gets it with a new receipt handle.
        await broker.sqs.change_message_visibility(
            QueueUrl=consumer.queue_url, ReceiptHandle=first, VisibilityTimeout=0
        )

        async def received_again() -> bool:
            return len(calls) > 1 or list(consumer._receipts.values()) not in ([first], [])

        await wait_until(received_again, timeout=30, message="the message received again")
        release.set()

        async def queue_empty() -> bool:
            reply = await broker.sqs.get_queue_attributes(
                QueueUrl=consumer.queue_url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )
            return all(value == "0" for value in reply["Attributes"].values())

        # Deleted by its newest receipt: nothing left, visible or in flight.
        await wait_until(queue_empty, timeout=30, message="the message deleted")
        # The member forgets the message once the delete's reply is back (SQS may report the
        # queue empty a moment before that).
        await wait_until(
            lambda: consumer._receipts == {} and consumer._inflight == {},
            timeout=30,
            message="the member's bookkeeping of the message cleared",
        )
        assert len(calls) == 1, [d.attempt for d in calls]
    finally:
        await broker.aclose()
