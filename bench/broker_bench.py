"""Network broker benchmark: Lumi's broker next to the raw client doing the same work, against
the same broker, in one run (``--broker kafka`` on tansu, ``--broker nats`` on nats-server; the
script starts the engine itself unless ``--url`` names one).

Figures per contestant (``lumi`` and ``raw``, rounds alternating, medians reported):
* ``publish_concurrent``: events/s with 64 publishers, each awaiting its durable publish;
* ``publish_batched``: events/s in batches of 500, each batch awaited;
* ``consume``: events/s handled and acknowledged by one consumer-group member, from the first
  delivery to the last (Lumi: the consumer loop with per-key order, retries and commits; raw:
  the client's batch fetch, each event read into a validated ``Envelope`` (as Lumi reads it)
  and passed to an async handler in turn, then
  the acknowledgement or a commit after the handlers — at-least-once, like Lumi);
* ``e2e``: publish call → handler start, p50/p99 ms, at ``--rate`` events/s.

Same work means the same payload (a CloudEvents JSON envelope, built and serialized per event
on both sides), durability (Kafka ``acks=all``
with the idempotent producer; JetStream publish acknowledgements) and acknowledgement of every
event. ``--peers`` adds aiokafka as a second raw Kafka client (why Lumi uses confluent-kafka).
Goal (issue 14): Lumi >= 0.8x raw throughput, e2e p50 within 2x of raw.

Run: ``python bench/broker_bench.py --broker kafka [--events 20000] [--rounds 3] [--json]``.
Adding a broker: a class with the four raw measurements in ``RAW`` and its engine in ``ENGINES``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the engine starters live with the tests

from lumi.brokers import create_broker  # noqa: E402
from lumi.brokers.base import Broker, Delivery  # noqa: E402
from lumi.model.context import new_id  # noqa: E402
from lumi.pipeline.publish import Envelope  # noqa: E402

CONCURRENCY = 64
BATCH = 500
CE_JSON = "application/cloudevents+json; charset=UTF-8"


def chunks(events: int) -> Iterator[range]:
    """``range(events)`` in batches of :data:`BATCH`."""
    for start in range(0, events, BATCH):
        yield range(start, min(events, start + BATCH))


def envelope(topic: str, n: int) -> Envelope:
    data = json.dumps({"n": n, "sent": time.time(), "note": "a small payload"}).encode()
    return Envelope(id=new_id(), source="/bench", type=topic, data=data, time="")


def sent_at(body: bytes) -> float:
    """The send time inside an event's JSON (structured envelope or bare data)."""
    obj = json.loads(body)
    return float(obj["data"]["sent"] if "data" in obj else obj["sent"])


async def timed(fn: Callable[[], Awaitable[Any]], events: int) -> float:
    started = time.perf_counter()
    await fn()
    return events / (time.perf_counter() - started)


def percentiles(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "p50_ms": ordered[len(ordered) // 2] * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "received": len(ordered),
    }


class Done:
    """Counts events and resolves when ``expected`` arrived; remembers the first arrival."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.first = 0.0
        self.event = asyncio.Event()
        self.latencies: list[float] = []

    def hit(self, body: bytes | None = None) -> None:
        if self.count == 0:
            self.first = time.perf_counter()
        if body is not None:
            self.latencies.append(time.time() - sent_at(body))
        self.count += 1
        if self.count >= self.expected:
            self.event.set()

    async def rate(self, timeout: float = 300) -> float:
        await asyncio.wait_for(self.event.wait(), timeout)
        return self.count / max(1e-9, time.perf_counter() - self.first)


# -- Lumi: the same code for every broker ---------------------------------------------------


class LumiSide:
    def __init__(self, url: str) -> None:
        self.url = url

    def fresh(self) -> str:
        """The URL with a JetStream stream of its own for this measurement, as the raw side
        creates one each time: a stream shared by every round keeps growing, with the durable
        consumers and publish ids of earlier rounds (concurrent publishes measured 0.56x of
        raw on the shared stream, 1.00x on fresh ones; see docs/events.md)."""
        if not self.url.startswith("nats"):
            return self.url
        parts = urllib.parse.urlsplit(self.url)
        query = dict(urllib.parse.parse_qsl(parts.query))
        query["stream"] = f"BENCH{uuid.uuid4().hex[:8].upper()}"
        query["prefix"] = f"bench{uuid.uuid4().hex[:6]}"
        return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))

    async def publish(self, events: int) -> dict[str, float]:
        async with create_broker(self.fresh(), app_dir=Path(".")) as broker:
            topic = f"Bench{uuid.uuid4().hex[:8]}.ticked"
            await broker.publish(topic, [envelope(topic, -1)])  # creates the topic

            async def concurrent() -> None:
                async def publisher(offset: int) -> None:
                    for n in range(offset, events, CONCURRENCY):
                        await broker.publish(topic, [envelope(topic, n)])

                await asyncio.gather(*(publisher(i) for i in range(CONCURRENCY)))

            async def batched() -> None:
                for batch in chunks(events):
                    await broker.publish(topic, [envelope(topic, n) for n in batch])

            return {
                "publish_concurrent": await timed(concurrent, events),
                "publish_batched": await timed(batched, events),
            }

    async def consume(self, events: int) -> float:
        return await lumi_consume(self.fresh(), events)

    async def e2e(self, rate: float, count: int) -> dict[str, float]:
        async with create_broker(self.fresh(), app_dir=Path(".")) as broker:
            topic = f"Bench{uuid.uuid4().hex[:8]}.ticked"
            done = Done(count)

            async def handler(delivery: Delivery) -> None:
                done.latencies.append(time.time() - sent_at(delivery.envelope.data))
                done.hit()

            await broker.subscribe(topic, "Bench", handler, start="latest")
            await _paced(lambda n: broker.publish(topic, [envelope(topic, n)]), rate, count)
            await asyncio.wait_for(done.event.wait(), 60)
            return percentiles(done.latencies)


async def lumi_consume(url: str, events: int) -> float:
    """Events/s one group member of Lumi's broker at ``url`` handles from a filled topic."""
    async with create_broker(url, app_dir=Path(".")) as broker:
        topic = f"Bench{uuid.uuid4().hex[:8]}.ticked"
        await _fill(broker, topic, events)
        done = Done(events)

        async def handler(delivery: Delivery) -> None:
            done.hit()

        subscription = await broker.subscribe(topic, "Bench", handler)
        rate = await done.rate()
        await subscription.aclose()
        return rate


async def _fill(broker: Broker, topic: str, events: int) -> None:
    for batch in chunks(events):
        await broker.publish(topic, [envelope(topic, n) for n in batch])


async def _paced(send: Callable[[int], Awaitable[Any]], rate: float, count: int) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    pending = set()
    for n in range(count):
        await asyncio.sleep(max(0.0, start + n / rate - loop.time()))
        task = asyncio.ensure_future(send(n))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)


# -- raw clients -----------------------------------------------------------------------------


class RawKafka:
    """confluent-kafka with the smallest asyncio bridge a user would write: a poll thread
    resolving one future per delivery report, a consumer thread handing batches to the loop."""

    def __init__(self, url: str) -> None:
        import confluent_kafka

        self.ck = confluent_kafka
        query = url.split("?", 1)[1] if "?" in url else ""
        self.options = dict(p.split("=", 1) for p in query.split("&") if p and "prefix" not in p)
        self.bootstrap = url.split("://", 1)[1].split("?", 1)[0]

    @contextmanager
    def producer(self) -> Iterator[Callable[[str, bytes, Any], asyncio.Future[None]]]:
        loop = asyncio.get_running_loop()
        producer = self.ck.Producer(
            {"bootstrap.servers": self.bootstrap, "acks": "all", "enable.idempotence": True,
             "linger.ms": 1}
        )  # fmt: skip
        stop = threading.Event()

        def poll() -> None:
            while not stop.is_set():
                producer.poll(0.1)

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()

        def send(topic: str, value: bytes, key: Any = None) -> asyncio.Future[None]:
            future: asyncio.Future[None] = loop.create_future()

            def done(err: Any, msg: Any) -> None:
                loop.call_soon_threadsafe(
                    future.set_exception if err else future.set_result,
                    RuntimeError(str(err)) if err else None,
                )

            headers = [("content-type", "application/cloudevents+json")]
            producer.produce(topic, value, key, headers=headers, on_delivery=done)
            return future

        try:
            yield send
        finally:
            stop.set()
            thread.join()
            producer.flush(30)

    def _topic(self) -> str:
        from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

        name = f"raw{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        admin.create_topics([NewTopic(name, num_partitions=3)])[name].result()
        return name

    async def publish(self, events: int) -> dict[str, float]:
        topic = self._topic()
        with self.producer() as send:
            # Each event built and serialized, as Lumi does per publish.
            async def concurrent() -> None:
                async def publisher(offset: int) -> None:
                    for n in range(offset, events, CONCURRENCY):
                        await send(topic, envelope(topic, n).to_json())

                await asyncio.gather(*(publisher(i) for i in range(CONCURRENCY)))

            async def batched() -> None:
                for batch in chunks(events):
                    sent = [send(topic, envelope(topic, n).to_json()) for n in batch]
                    await asyncio.gather(*sent)

            return {
                "publish_concurrent": await timed(concurrent, events),
                "publish_batched": await timed(batched, events),
            }

    def _consumer(
        self, topic: str, handler: Callable[[Any], Awaitable[None]]
    ) -> Callable[[], None]:
        """A consumer thread handing batches to the loop, where each event is read and
        handled in turn, and the batch committed after its handlers returned."""
        loop = asyncio.get_running_loop()
        batches: asyncio.Queue[list[Any]] = asyncio.Queue()
        consumer = self.ck.Consumer(
            {"bootstrap.servers": self.bootstrap, "group.id": f"raw-{uuid.uuid4().hex}",
             "enable.auto.commit": False, "auto.offset.reset": "earliest", **self.options}
        )  # fmt: skip
        stop = threading.Event()
        handled: list[Any] = []  # the last message of each handled batch, to commit

        def run() -> None:
            # the consumer is used by this thread only (a call from another thread waits for
            # its lock, which poll() hardly ever releases)
            consumer.subscribe([topic])
            while not stop.is_set():
                while handled:
                    consumer.commit(message=handled.pop(0), asynchronous=True)
                msg = consumer.poll(0.1)
                if msg is None or msg.error():
                    continue
                batch = [msg, *consumer.consume(BATCH - 1, 0)]
                loop.call_soon_threadsafe(batches.put_nowait, batch)
            consumer.close()

        async def handle() -> None:
            while True:
                batch = await batches.get()
                for msg in batch:
                    await handler(msg)
                handled.append(batch[-1])

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        task = asyncio.create_task(handle())

        def close() -> None:
            loop.call_soon_threadsafe(task.cancel)
            stop.set()
            thread.join()

        return close

    async def consume(self, events: int) -> float:
        topic = self._topic()
        body = envelope(topic, 0).to_json()
        with self.producer() as send:
            for batch in chunks(events):
                await asyncio.gather(*(send(topic, body) for _ in batch))
        done = Done(events)

        async def handler(msg: Any) -> None:
            Envelope.from_json(msg.value())  # reads and validates the event, as Lumi does
            done.hit()

        close = self._consumer(topic, handler)
        rate = await done.rate()
        await asyncio.to_thread(close)
        return rate

    async def e2e(self, rate: float, count: int) -> dict[str, float]:
        topic = self._topic()
        done = Done(count)
        joined = asyncio.Event()

        async def handler(msg: Any) -> None:
            if json.loads(msg.value())["data"]["n"] < 0:
                joined.set()
            else:
                done.hit(msg.value())

        close = self._consumer(topic, handler)
        with self.producer() as send:
            while not joined.is_set():  # until the consumer has joined and reads the topic
                await send(topic, envelope(topic, -1).to_json())
                await asyncio.sleep(0.2)
            await _paced(lambda n: send(topic, envelope(topic, n).to_json()), rate, count)
            await asyncio.wait_for(done.event.wait(), 60)
        await asyncio.to_thread(close)
        return percentiles(done.latencies)


class RawNats:
    """nats-py JetStream: awaited publishes, publish_async for batches, a pull consumer."""

    def __init__(self, url: str) -> None:
        self.server = url.split("?", 1)[0]

    async def _connect(self) -> tuple[Any, Any, str, str]:
        import nats

        nc = await nats.connect(self.server)
        js = nc.jetstream()
        name = f"RAW{uuid.uuid4().hex[:8]}"
        await js.add_stream(name=name, subjects=[f"{name.lower()}.>"])
        return nc, js, name, f"{name.lower()}.ticked"

    async def publish(self, events: int) -> dict[str, float]:
        nc, js, _, subject = await self._connect()

        # As Lumi does per event: build and serialize the envelope, send it with its id as
        # Nats-Msg-Id and its content type (Lumi's structured mode sends both headers).
        def message(n: int) -> tuple[bytes, dict[str, str]]:
            event = envelope(subject, n)
            return event.to_json(), {"content-type": CE_JSON, "Nats-Msg-Id": event.id}

        async def concurrent() -> None:
            async def publisher(offset: int) -> None:
                for n in range(offset, events, CONCURRENCY):
                    body, headers = message(n)
                    await js.publish(subject, body, headers=headers)

            await asyncio.gather(*(publisher(i) for i in range(CONCURRENCY)))

        async def batched() -> None:
            for batch in chunks(events):
                futures = []
                for n in batch:
                    body, headers = message(n)
                    futures.append(await js.publish_async(subject, body, headers=headers))
                await asyncio.gather(*futures)

        figures = {
            "publish_concurrent": await timed(concurrent, events),
            "publish_batched": await timed(batched, events),
        }
        await nc.close()
        return figures

    async def consume(self, events: int) -> float:
        nc, js, stream, subject = await self._connect()
        body = envelope(subject, 0).to_json()
        for batch in chunks(events):
            futures = [await js.publish_async(subject, body) for _ in batch]
            await asyncio.gather(*futures)
        sub = await js.pull_subscribe(subject, durable="raw", stream=stream)
        done = Done(events)
        while done.count < events:
            for msg in await sub.fetch(BATCH, timeout=5):
                Envelope.from_json(msg.data)  # reads and validates the event, as Lumi does
                await msg.ack()
                done.hit()
        rate = await done.rate()
        await nc.close()
        return rate

    async def e2e(self, rate: float, count: int) -> dict[str, float]:
        from nats.js.api import ConsumerConfig, DeliverPolicy

        nc, js, stream, subject = await self._connect()
        config = ConsumerConfig(deliver_policy=DeliverPolicy.NEW)
        sub = await js.pull_subscribe(subject, durable="raw", stream=stream, config=config)
        done = Done(count)

        async def pull() -> None:
            while done.count < count:
                try:
                    msgs = await sub.fetch(BATCH, timeout=1)
                except TimeoutError:
                    continue
                for msg in msgs:
                    done.hit(msg.data)
                    await msg.ack()

        puller = asyncio.create_task(pull())
        await _paced(lambda n: js.publish(subject, envelope(subject, n).to_json()), rate, count)
        await asyncio.wait_for(puller, 60)
        await nc.close()
        return percentiles(done.latencies)


class AioKafka(RawKafka):
    """aiokafka, natively asyncio (idempotence off: its idempotent producer fails on tansu)."""

    async def publish(self, events: int) -> dict[str, float]:
        import aiokafka

        topic = self._topic()
        producer = aiokafka.AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", linger_ms=1, enable_idempotence=False
        )
        await producer.start()

        async def concurrent() -> None:
            async def publisher(offset: int) -> None:
                for n in range(offset, events, CONCURRENCY):
                    await producer.send_and_wait(topic, envelope(topic, n).to_json())

            await asyncio.gather(*(publisher(i) for i in range(CONCURRENCY)))

        async def batched() -> None:
            for batch in chunks(events):
                sent = [await producer.send(topic, envelope(topic, n).to_json()) for n in batch]
                await asyncio.gather(*sent)

        figures = {
            "publish_concurrent": await timed(concurrent, events),
            "publish_batched": await timed(batched, events),
        }
        await producer.stop()
        return figures

    async def consume(self, events: int) -> float:
        import aiokafka

        topic = self._topic()
        body = envelope(topic, 0).to_json()
        with self.producer() as send:
            for batch in chunks(events):
                await asyncio.gather(*(send(topic, body) for _ in batch))
        consumer = aiokafka.AIOKafkaConsumer(
            topic, bootstrap_servers=self.bootstrap, group_id=f"aio-{uuid.uuid4().hex}",
            auto_offset_reset="earliest", enable_auto_commit=False, session_timeout_ms=3000,
            heartbeat_interval_ms=500, rebalance_timeout_ms=6000,
        )  # fmt: skip
        await consumer.start()
        done = Done(events)
        while done.count < events:
            batches = await consumer.getmany(timeout_ms=500, max_records=BATCH)
            for records in batches.values():
                for record in records:
                    Envelope.from_json(record.value)
                    done.hit()
            if batches:
                await consumer.commit()
        rate = await done.rate()
        await consumer.stop()
        return rate

    async def e2e(self, rate: float, count: int) -> dict[str, float]:
        return {}


RAW: dict[str, type[Any]] = {"kafka": RawKafka, "nats": RawNats}
PEERS: dict[str, dict[str, type[Any]]] = {"kafka": {"aiokafka": AioKafka}}


@contextmanager
def engine(name: str) -> Iterator[str]:
    """Start the broker's engine on a free loopback port; yields an ``events`` URL."""
    folder = Path(tempfile.mkdtemp(prefix="lumi-broker-bench-"))
    if name == "kafka":
        from tests.engines.kafka import Tansu

        server: Any = Tansu(folder)
        url = lambda: server.url()  # noqa: E731
    elif name == "nats":
        from tests.engines.nats import NatsServer

        server = NatsServer(folder)
        url = lambda: server.url(f"stream=BENCH&prefix=bench{uuid.uuid4().hex[:6]}")  # noqa: E731
    else:
        raise SystemExit(f"no engine for {name!r}; pass --url")
    server.start()
    try:
        yield url()
    finally:
        server.stop()


async def measure(side: Any, args: argparse.Namespace) -> dict[str, float]:
    figures = dict(await side.publish(args.events))
    figures["consume"] = await side.consume(args.events)
    e2e = await side.e2e(args.rate, int(args.rate * args.seconds))
    figures.update({f"e2e_{k}": v for k, v in e2e.items() if k != "received"})
    return figures


async def run(args: argparse.Namespace, url: str) -> dict[str, Any]:
    contestants: dict[str, Any] = {"lumi": LumiSide(url), "raw": RAW[args.broker](url)}
    if args.peers:
        contestants.update({n: cls(url) for n, cls in PEERS.get(args.broker, {}).items()})
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in contestants}
    if args.warmup:  # first connections, imports and cold caches: a short round, not counted
        warm = argparse.Namespace(**{**vars(args), "events": min(args.events, 2000), "seconds": 1})
        for side in contestants.values():
            await measure(side, warm)
    for r in range(args.rounds):
        order = list(contestants) if r % 2 == 0 else list(reversed(contestants))
        for name in order:
            rounds[name].append(await measure(contestants[name], args))
    medians = {
        name: {k: statistics.median(f[k] for f in figures) for k in figures[0]}
        for name, figures in rounds.items()
    }
    lumi, raw = medians["lumi"], medians["raw"]
    ratios = {k: lumi[k] / raw[k] for k in ("publish_concurrent", "publish_batched", "consume")}
    ratios["e2e_p50"] = lumi["e2e_p50_ms"] / raw["e2e_p50_ms"]
    return {"broker": args.broker, "medians": medians, "lumi_over_raw": ratios}


def report(result: dict[str, Any]) -> None:
    print(f"broker: {result['broker']} (medians of rounds)")
    for name, figures in result["medians"].items():
        shown = "  ".join(
            f"{k}={v:,.0f}/s" if not k.startswith("e2e") else f"{k}={v:.2f}"
            for k, v in figures.items()
        )
        print(f"  {name:9} {shown}")
    ratios = result["lumi_over_raw"]
    print("  lumi/raw  " + "  ".join(f"{k}={v:.2f}x" for k, v in ratios.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", required=True, choices=sorted(RAW))
    parser.add_argument("--url", help="an events URL of a running broker (default: start one)")
    parser.add_argument("--events", type=int, default=20000, help="events per throughput figure")
    parser.add_argument("--rate", type=float, default=500.0, help="events/s for latency")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of a latency run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median)")
    parser.add_argument("--peers", action="store_true", help="also other raw clients")
    parser.add_argument(
        "--no-warmup", dest="warmup", action="store_false", help="skip the uncounted warm-up"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    if args.url:
        result = asyncio.run(run(args, args.url))
    else:
        with engine(args.broker) as url:
            result = asyncio.run(run(args, url))
    report(result)
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
