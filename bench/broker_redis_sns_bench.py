"""Redis and SNS brokers against the raw client doing the same work on the same engine.

For each broker, in one run (engines started here on loopback: redis-server, moto_server):

* publish throughput: ``concurrency`` publishers, one event per call (Lumi: ``broker.publish``;
  raw: ``XADD`` with redis-py / ``sns.publish`` with aiobotocore, same CloudEvents bytes);
* consume throughput: a backlog of events handled by a new consumer group and acknowledged
  (Lumi: ``subscribe`` with a no-op handler; raw: ``XREADGROUP COUNT 32`` + ``XACK`` of each
  batch / ``receive_message`` of 10 + ``delete_message_batch``);
* end-to-end latency, publish → handler, one event at a time (raw: a blocking ``XREADGROUP`` /
  a long poll).

Rounds alternate Lumi and raw and the medians are reported, with Lumi/raw ratios (throughput:
higher is better; latency: Lumi's p50 over raw's). moto_server is slow and slows further as
queues fill, so SNS volumes are small and its figures say more about moto than about AWS.

Run: ``python bench/broker_redis_sns_bench.py [--rounds 3] [--json]``.
Goal (issue 14): Lumi >= 0.8x raw throughput, e2e p50 within 2x of raw.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.engines.moto import AWS_ENV, MotoServer
from tests.engines.redis import RedisServer

from lumi.brokers.base import Broker, Delivery
from lumi.brokers.redis import RedisBroker
from lumi.brokers.sns import SnsBroker
from lumi.model.context import new_id
from lumi.model.envelope import Envelope

TOPIC = "Bench.ticked"


def envelope(n: int) -> Envelope:
    return Envelope(
        id=new_id(), source="/lumi/bench/Bench", type=TOPIC, data=b'{"n": %d}' % n,
        time="2026-01-01T00:00:00.000000Z",
    )  # fmt: skip


async def _concurrently(
    count: int, concurrency: int, one: Callable[[int], Awaitable[Any]]
) -> float:
    """Seconds to run ``one(i)`` for i < count with ``concurrency`` workers."""
    counter = iter(range(count))

    async def worker() -> None:
        for i in counter:
            await one(i)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


# -- Redis ---------------------------------------------------------------------------------------


class RedisCase:
    name = "redis"
    publish_count, consume_count, latency_count = 5000, 5000, 300

    def __init__(self, server: RedisServer) -> None:
        self.server = server

    def broker(self) -> Broker:
        return RedisBroker(self.server.url, prefix=f"b{uuid.uuid4().hex[:6]}:", maxlen=0)

    async def raw_publish(self, count: int, concurrency: int) -> float:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(self.server.url)
        stream = f"raw{uuid.uuid4().hex[:6]}:{TOPIC}"
        try:
            return await _concurrently(
                count, concurrency,
                lambda i: client.xadd(stream, {"event": envelope(i).to_json()}),
            )  # fmt: skip
        finally:
            await client.aclose()

    async def raw_consume(self, count: int) -> float:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(self.server.url)
        stream = f"raw{uuid.uuid4().hex[:6]}:{TOPIC}"
        try:
            async with client.pipeline(transaction=False) as pipe:
                for i in range(count):
                    pipe.xadd(stream, {"event": envelope(i).to_json()})
                await pipe.execute()
            await client.xgroup_create(stream, "G", id="0")
            handled = 0
            started = time.perf_counter()
            while handled < count:
                reply = await client.xreadgroup("G", "m", {stream: ">"}, count=32, block=1000)
                for _, entries in reply or ():
                    ids = []
                    for entry_id, fields in entries:
                        Envelope.from_json(fields[b"event"])  # the raw consumer parses too
                        ids.append(entry_id)
                    await client.xack(stream, "G", *ids)
                    handled += len(ids)
            return time.perf_counter() - started
        finally:
            await client.aclose()

    async def raw_latency(self, count: int) -> list[float]:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(self.server.url)
        reader = aioredis.Redis.from_url(self.server.url)
        stream = f"raw{uuid.uuid4().hex[:6]}:{TOPIC}"
        await client.xgroup_create(stream, "G", id="$", mkstream=True)
        samples: list[float] = []
        sent_at: dict[str, float] = {}
        done = asyncio.Event()

        async def consume() -> None:
            while len(samples) < count:
                reply = await reader.xreadgroup("G", "m", {stream: ">"}, count=32, block=1000)
                for _, entries in reply or ():
                    for entry_id, fields in entries:
                        event = Envelope.from_json(fields[b"event"])
                        samples.append(time.perf_counter() - sent_at[event.id])
                        await reader.xack(stream, "G", entry_id)
            done.set()

        task = asyncio.create_task(consume())
        try:
            for i in range(count):
                event = envelope(i)
                sent_at[event.id] = time.perf_counter()
                await client.xadd(stream, {"event": event.to_json()})
                await asyncio.sleep(0.002)
            await asyncio.wait_for(done.wait(), 60)
        finally:
            task.cancel()
            await client.aclose()
            await reader.aclose()
        return samples


# -- SNS -----------------------------------------------------------------------------------------


class SnsCase:
    name = "sns"
    publish_count, consume_count, latency_count = 200, 150, 40

    def __init__(self, server: MotoServer) -> None:
        self.server = server

    def broker(self) -> Broker:
        return SnsBroker(
            region="us-east-1", endpoint=self.server.endpoint, prefix=f"b{uuid.uuid4().hex[:6]}-",
            wait=1, fifo=False, archive=False,
        )  # fmt: skip

    def _clients(self) -> Any:
        from aiobotocore.session import get_session

        session = get_session()
        return (
            session.create_client(
                "sns", region_name="us-east-1", endpoint_url=self.server.endpoint
            ),
            session.create_client(
                "sqs", region_name="us-east-1", endpoint_url=self.server.endpoint
            ),
        )

    async def _topic_and_queue(self, sns: Any, sqs: Any) -> tuple[str, str]:
        tag = uuid.uuid4().hex[:8]
        arn = (await sns.create_topic(Name=f"raw-{tag}"))["TopicArn"]
        url = (await sqs.create_queue(QueueName=f"raw-{tag}"))["QueueUrl"]
        queue_arn = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"]))[
            "Attributes"
        ]["QueueArn"]
        await sns.subscribe(
            TopicArn=arn, Protocol="sqs", Endpoint=queue_arn,
            Attributes={"RawMessageDelivery": "true"},
        )  # fmt: skip
        return arn, url

    async def raw_publish(self, count: int, concurrency: int) -> float:
        sns_cm, sqs_cm = self._clients()
        async with sns_cm as sns, sqs_cm as sqs:
            arn, _ = await self._topic_and_queue(sns, sqs)
            return await _concurrently(
                count, concurrency,
                lambda i: sns.publish(TopicArn=arn, Message=envelope(i).to_json().decode()),
            )  # fmt: skip

    async def raw_consume(self, count: int) -> float:
        sns_cm, sqs_cm = self._clients()
        async with sns_cm as sns, sqs_cm as sqs:
            arn, url = await self._topic_and_queue(sns, sqs)
            for start in range(0, count, 10):
                await sns.publish_batch(
                    TopicArn=arn,
                    PublishBatchRequestEntries=[
                        {"Id": str(i), "Message": envelope(i).to_json().decode()}
                        for i in range(start, min(count, start + 10))
                    ],
                )
            handled = 0
            started = time.perf_counter()
            while handled < count:
                reply = await sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1
                )
                messages = reply.get("Messages", [])
                for message in messages:
                    Envelope.from_json(message["Body"])
                if messages:
                    await sqs.delete_message_batch(
                        QueueUrl=url,
                        Entries=[
                            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                            for i, m in enumerate(messages)
                        ],
                    )
                handled += len(messages)
            return time.perf_counter() - started

    async def raw_latency(self, count: int) -> list[float]:
        sns_cm, sqs_cm = self._clients()
        async with sns_cm as sns, sqs_cm as sqs:
            arn, url = await self._topic_and_queue(sns, sqs)
            samples: list[float] = []
            sent_at: dict[str, float] = {}

            async def consume() -> None:
                while len(samples) < count:
                    reply = await sqs.receive_message(
                        QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1
                    )
                    for message in reply.get("Messages", []):
                        event = Envelope.from_json(message["Body"])
                        samples.append(time.perf_counter() - sent_at[event.id])
                        await sqs.delete_message(
                            QueueUrl=url, ReceiptHandle=message["ReceiptHandle"]
                        )

            task = asyncio.create_task(consume())
            for i in range(count):
                event = envelope(i)
                sent_at[event.id] = time.perf_counter()
                await sns.publish(TopicArn=arn, Message=event.to_json().decode())
                await asyncio.sleep(0.05)
            await asyncio.wait_for(task, 60)
            return samples


# -- Lumi, the same work ------------------------------------------------------------------------


async def lumi_publish(case: Any, count: int, concurrency: int) -> float:
    async with case.broker() as broker:
        if case.name == "sns":  # as for the raw client: a topic with one subscribed queue

            async def ignore(delivery: Delivery) -> None:
                pass

            await (await broker.subscribe(TOPIC, "G", ignore)).aclose()
        await broker.publish(TOPIC, [envelope(-1)])  # topic creation is not what we measure
        return await _concurrently(
            count, concurrency, lambda i: broker.publish(TOPIC, [envelope(i)])
        )


async def lumi_consume(case: Any, count: int) -> float:
    async with case.broker() as broker:
        handled = asyncio.Event()
        seen = 0

        async def handler(delivery: Delivery) -> None:
            nonlocal seen
            seen += 1
            if seen == count:
                handled.set()

        if case.name == "sns":  # SNS keeps nothing: the group's queue must exist first
            sub = await broker.subscribe(TOPIC, "G", handler)
            await sub.aclose()
        for start in range(0, count, 500):
            await broker.publish(
                TOPIC, [envelope(i) for i in range(start, min(count, start + 500))]
            )
        started = time.perf_counter()
        await broker.subscribe(TOPIC, "G", handler)
        await asyncio.wait_for(handled.wait(), 120)
        return time.perf_counter() - started


async def lumi_latency(case: Any, count: int) -> list[float]:
    async with case.broker() as broker:
        samples: list[float] = []
        sent_at: dict[str, float] = {}

        async def handler(delivery: Delivery) -> None:
            samples.append(time.perf_counter() - sent_at[delivery.envelope.id])

        await broker.subscribe(TOPIC, "G", handler, start="latest")
        gap = 0.002 if case.name == "redis" else 0.05
        for i in range(count):
            event = envelope(i)
            sent_at[event.id] = time.perf_counter()
            await broker.publish(TOPIC, [event])
            await asyncio.sleep(gap)
        deadline = time.monotonic() + 60
        while len(samples) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return samples


async def run_case(case: Any, rounds: int, concurrency: int) -> dict[str, Any]:
    results: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        results.setdefault(name, []).append(value)

    for round_no in range(rounds):
        order = ("lumi", "raw") if round_no % 2 == 0 else ("raw", "lumi")
        for who in order:
            n = case.publish_count
            if who == "lumi":
                add("lumi_publish", n / await lumi_publish(case, n, concurrency))
                add(
                    "lumi_consume",
                    case.consume_count / await lumi_consume(case, case.consume_count),
                )
                lat = await lumi_latency(case, case.latency_count)
            else:
                add("raw_publish", n / await case.raw_publish(n, concurrency))
                add("raw_consume", case.consume_count / await case.raw_consume(case.consume_count))
                lat = await case.raw_latency(case.latency_count)
            add(f"{who}_p50_ms", statistics.median(lat) * 1000)
            add(f"{who}_p99_ms", sorted(lat)[int(len(lat) * 0.99) - 1] * 1000)
    medians = {name: statistics.median(values) for name, values in results.items()}
    medians["publish_ratio"] = medians["lumi_publish"] / medians["raw_publish"]
    medians["consume_ratio"] = medians["lumi_consume"] / medians["raw_consume"]
    medians["p50_ratio"] = medians["lumi_p50_ms"] / medians["raw_p50_ms"]
    return medians


def report(name: str, m: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"{name}: events/s (Lumi | raw | ratio), e2e ms (p50, p99)",
            f"  publish  {m['lumi_publish']:>9,.0f} | {m['raw_publish']:>9,.0f} | "
            f"{m['publish_ratio']:.2f}x",
            f"  consume  {m['lumi_consume']:>9,.0f} | {m['raw_consume']:>9,.0f} | "
            f"{m['consume_ratio']:.2f}x",
            f"  e2e p50  {m['lumi_p50_ms']:>9.2f} | {m['raw_p50_ms']:>9.2f} | "
            f"{m['p50_ratio']:.2f}x   p99 {m['lumi_p99_ms']:.2f} | {m['raw_p99_ms']:.2f}",
        ]
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--only", choices=["redis", "sns"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.update(AWS_ENV)
    out: dict[str, Any] = {}
    if args.only in (None, "redis"):
        redis_server = RedisServer(appendonly=False)
        redis_server.start()
        try:
            out["redis"] = await run_case(RedisCase(redis_server), args.rounds, args.concurrency)
        finally:
            redis_server.destroy()
    if args.only in (None, "sns"):
        moto = MotoServer()
        moto.start()
        try:
            out["sns"] = await run_case(SnsCase(moto), args.rounds, args.concurrency)
        finally:
            moto.stop()
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for name, medians in out.items():
            print(report(name, medians))


if __name__ == "__main__":
    asyncio.run(main())
