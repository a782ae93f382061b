"""The broker contract, written once: every broker's test module subclasses :class:`BrokerContract`.

A subclass provides one fixture, ``connect``: an async factory of *started* brokers that share one
backend (a call is a new connection — a new process, as far as the contract can tell — but a
broker that lives in one process may return the same instance). Brokers must redeliver after
at most ~50 ms of backoff and may be closed by the fixture at teardown. Redelivery must use the ``FAST`` backoff below. See test_memory.py and
test_embedded.py: adding a broker is a ten-line subclass.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pydantic
import pytest

import lumi
from lumi.brokers.base import Backoff, Broker, Delivery, Reject, dead_letter_topic
from lumi.model.context import new_id
from lumi.model.envelope import Envelope
from lumi.pipeline import Call, Handler
from lumi.testing import wait_until

Connect = Callable[[], Awaitable[Broker]]
FAST = Backoff(initial=0.01, multiplier=2.0, maximum=0.05)
TIMEOUT = 15.0


@contextlib.asynccontextmanager
async def connections(factory: Callable[[], Broker]) -> AsyncIterator[Connect]:
    """A ``connect`` for the fixture: starts brokers from ``factory`` and closes each at the end."""
    opened: list[Broker] = []

    async def connect() -> Broker:
        broker = factory()
        if not broker.started:
            await broker.start()
        if broker not in opened:
            opened.append(broker)
        return broker

    try:
        yield connect
    finally:
        for broker in reversed(opened):
            await broker.aclose()


def envelope(topic: str, data: Any, *, key: str | None = None, **fields: Any) -> Envelope:
    return Envelope(
        id=new_id(),
        source="/lumi/test/contract",
        type=topic,
        data=pydantic.TypeAdapter(Any).dump_json(data),
        partitionkey=key,
        subject=key,
        **fields,
    )


def topic_name() -> str:
    """A fresh topic per test, so brokers with shared state cannot leak between tests (a uuid:
    ids from ``new_id`` share a per-process prefix)."""
    return f"Svc{uuid.uuid4().hex[:12]}.happened"


class Recorder:
    """A delivery handler that records what it got, optionally failing chosen attempts."""

    def __init__(self, fail: Callable[[Delivery], bool] = lambda d: False) -> None:
        self.deliveries: list[Delivery] = []
        self.fail = fail

    async def __call__(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        if self.fail(delivery):
            raise RuntimeError(f"boom on {delivery.envelope.id} attempt {delivery.attempt}")

    @property
    def ids(self) -> list[str]:
        return [d.envelope.id for d in self.deliveries]


class BrokerContract:
    """Semantics every Lumi broker keeps (see ``lumi.brokers.base``)."""

    timeout = TIMEOUT  # seconds to wait for deliveries; a slow engine (moto) may raise it

    # -- envelope and basic delivery ---------------------------------------------------------

    async def test_envelope_fields_survive_the_trip(self, connect: Connect) -> None:
        """Every CloudEvents attribute and extension arrives exactly as published."""
        broker = await connect()
        topic = topic_name()
        sent = envelope(
            topic,
            {"n": 1, "text": "héllo"},
            key="k1",
            time="2026-01-02T03:04:05.000006Z",
            traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            correlationid="corr-1",
            dataschema="https://example.com/schema.json",
            extensions={"tenant": "acme"},
        )
        got = Recorder()
        await broker.subscribe(topic, "G", got)
        await broker.publish(topic, [sent])
        await wait_until(lambda: len(got.deliveries) == 1, timeout=self.timeout, message="delivery")
        received = got.deliveries[0]
        assert received.envelope == sent
        assert received.topic == topic and received.group == "G" and received.attempt == 1

    async def test_batch_keeps_publish_order(self, connect: Connect) -> None:
        """A batch of keyed events reaches a group in the order it was published."""
        broker = await connect()
        topic = topic_name()
        sent = [envelope(topic, {"n": i}, key="same") for i in range(50)]
        got = Recorder()
        await broker.subscribe(topic, "G", got)
        await broker.publish(topic, sent[:20])
        await broker.publish(topic, sent[20:])
        await wait_until(lambda: len(got.ids) == 50, timeout=self.timeout, message="50 events")
        assert got.ids == [e.id for e in sent]

    async def test_order_is_kept_per_key_despite_failures(self, connect: Connect) -> None:
        """Events with one key are handled in order even when handlers take random time and an
        event fails once: later events with its key wait for its retry."""
        broker = await connect()
        topic = topic_name()
        rng = random.Random(4)
        sent = [envelope(topic, {"n": i}, key=f"k{i % 3}") for i in range(60)]
        flaky = sent[7].id
        done: list[Envelope] = []

        async def handler(delivery: Delivery) -> None:
            await asyncio.sleep(rng.random() / 200)
            if delivery.envelope.id == flaky and delivery.attempt == 1:
                raise RuntimeError("first attempt fails")
            done.append(delivery.envelope)

        await broker.subscribe(topic, "G", handler)
        await broker.publish(topic, sent)
        await wait_until(lambda: len(done) == 60, timeout=self.timeout, message="60 events")
        for key in ("k0", "k1", "k2"):
            assert [e.id for e in done if e.partitionkey == key] == [
                e.id for e in sent if e.partitionkey == key
            ]

    async def test_every_group_gets_every_event(self, connect: Connect) -> None:
        """Two groups on one topic each receive every event."""
        broker = await connect()
        topic = topic_name()
        first, second = Recorder(), Recorder()
        await broker.subscribe(topic, "A", first)
        await broker.subscribe(topic, "B", second)
        sent = [envelope(topic, i) for i in range(20)]
        await broker.publish(topic, sent)
        await wait_until(
            lambda: len(first.ids) == 20 and len(second.ids) == 20, timeout=self.timeout,
            message="both groups",
        )  # fmt: skip
        assert sorted(first.ids) == sorted(second.ids) == sorted(e.id for e in sent)

    async def test_members_of_a_group_split_the_events(self, connect: Connect) -> None:
        """Two members of one group (two connections) share the events: each event is handled
        by exactly one of them, and both do some of the work."""
        one, two = await connect(), await connect()
        topic = topic_name()

        async def slow(delivery: Delivery) -> None:
            await asyncio.sleep(0.01)

        first, second = Recorder(), Recorder()
        await one.subscribe(topic, "G", _chain(first, slow))
        await two.subscribe(topic, "G", _chain(second, slow))
        sent = [envelope(topic, i) for i in range(200)]
        for start in range(0, 200, 20):
            await one.publish(topic, sent[start : start + 20])
        await wait_until(
            lambda: len(first.ids) + len(second.ids) >= 200,
            timeout=self.timeout,
            message="200 events",
        )
        assert sorted(first.ids + second.ids) == sorted(e.id for e in sent)
        assert first.ids and second.ids

    # -- failure, retry, dead letters ----------------------------------------------------------

    async def test_keyless_events_are_handled_concurrently(self, connect: Connect) -> None:
        """Events without a key do not wait for one another: a member runs several handlers
        at once (each handler here waits until four are running)."""
        broker = await connect()
        topic = topic_name()
        running, peak, handled = 0, 0, []
        four = asyncio.Event()

        async def handler(delivery: Delivery) -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            if running >= 4:
                four.set()
            try:
                await asyncio.wait_for(four.wait(), self.timeout)
            finally:
                running -= 1
            handled.append(delivery.envelope.id)

        await broker.subscribe(topic, "G", handler)
        sent = [envelope(topic, {"n": i}) for i in range(8)]
        await broker.publish(topic, sent)
        await wait_until(
            lambda: len(set(handled)) == 8, timeout=2 * self.timeout, message="8 events"
        )
        assert peak >= 4, f"at most {peak} handler(s) ran at once"

    async def test_failure_is_redelivered_with_growing_backoff(self, connect: Connect) -> None:
        """A handler that fails twice gets the event again (attempts 1, 2, 3) and success ends it."""
        broker = await connect()
        topic = topic_name()
        stamps: list[float] = []
        loop = asyncio.get_running_loop()

        def fail(delivery: Delivery) -> bool:
            stamps.append(loop.time())
            return delivery.attempt < 3

        got = Recorder(fail)
        await broker.subscribe(topic, "G", got, max_attempts=5)
        await broker.publish(topic, [envelope(topic, "x")])
        await wait_until(
            lambda: len(got.deliveries) == 3, timeout=self.timeout, message="3 attempts"
        )
        assert [d.attempt for d in got.deliveries] == [1, 2, 3]
        # FAST backoff: 10 ms before the 2nd attempt, 20 ms before the 3rd (sleeps never end early)
        assert stamps[1] - stamps[0] >= 0.009 and stamps[2] - stamps[1] >= 0.019
        await broker.publish(topic, [marker := envelope(topic, "after")])
        await wait_until(lambda: marker.id in got.ids, timeout=self.timeout, message="next event")
        assert len(got.deliveries) == 4
        assert await broker.dead_letters(topic) == []

    async def test_dead_letter_after_max_attempts_records_why(self, connect: Connect) -> None:
        """After max_attempts failures the event is in the group's dead-letter topic with the
        reason, the attempt count and its original envelope; other events keep flowing."""
        broker = await connect()
        topic = topic_name()
        doomed = envelope(topic, "doomed", key="k")
        got = Recorder(lambda d: d.envelope.id == doomed.id)
        await broker.subscribe(topic, "G", got, max_attempts=2)
        await broker.publish(topic, [doomed, after := envelope(topic, "fine", key="k")])
        await wait_until(
            lambda: after.id in got.ids, timeout=self.timeout, message="the next event"
        )
        assert got.ids == [doomed.id, doomed.id, after.id]
        letters = await broker.dead_letters(topic, "G")
        assert len(letters) == 1
        letter = letters[0]
        assert letter.envelope == doomed
        assert (letter.topic, letter.group, letter.attempts) == (topic, "G", 2)
        assert "RuntimeError: boom on" in letter.reason and letter.time

    async def test_dead_letter_topic_can_be_consumed(self, connect: Connect) -> None:
        """The dead-letter topic is a topic: a subscriber sees the event with the reason in
        CloudEvents extensions."""
        broker = await connect()
        topic = topic_name()
        alerts = Recorder()
        await broker.subscribe(dead_letter_topic(topic, "G"), "alerts", alerts)
        await broker.subscribe(topic, "G", Recorder(lambda d: True), max_attempts=1)
        await broker.publish(topic, [doomed := envelope(topic, "x")])
        await wait_until(lambda: len(alerts.ids) == 1, timeout=self.timeout, message="alert")
        got = alerts.deliveries[0].envelope
        assert got.id == doomed.id
        assert got.extensions["deadlettergroup"] == "G"
        assert "boom" in got.extensions["deadletterreason"]
        assert got.extensions["deadletterattempts"] == "1"

    async def test_reject_dead_letters_without_retrying(self, connect: Connect) -> None:
        """A handler raising Reject sends the event to the dead-letter topic after one attempt."""
        broker = await connect()
        topic = topic_name()
        calls: list[int] = []

        async def handler(delivery: Delivery) -> None:
            calls.append(delivery.attempt)
            raise Reject("payload can never be valid")

        await broker.subscribe(topic, "G", handler, max_attempts=5)
        await broker.publish(topic, [envelope(topic, "x")])
        letters = await _wait_dead_letters(broker, topic, 1, timeout=self.timeout)
        assert calls == [1]
        assert letters[0].reason == "rejected: payload can never be valid"

    async def test_replay_sends_dead_letters_back_to_their_group(self, connect: Connect) -> None:
        """Replayed dead letters leave the dead-letter topic and reach the failing group again
        (only the chosen ones, and no other group)."""
        broker = await connect()
        topic = topic_name()
        broken = True
        failing = Recorder(lambda d: broken)
        other = Recorder()
        await broker.subscribe(topic, "Failing", failing, max_attempts=1)
        await broker.subscribe(topic, "Other", other)
        first, second = envelope(topic, 1), envelope(topic, 2)
        await broker.publish(topic, [first, second])
        await _wait_dead_letters(broker, topic, 2, timeout=self.timeout)
        broken = False
        assert await broker.replay(topic, "Failing", event_ids=[second.id]) == 1
        await wait_until(lambda: len(failing.ids) == 3, timeout=self.timeout, message="replayed")
        assert failing.ids[-1] == second.id
        assert failing.deliveries[-1].envelope == second  # no dead-letter extensions
        assert [d.envelope.id for d in await broker.dead_letters(topic)] == [first.id]
        assert await broker.replay() == 1
        await wait_until(lambda: len(failing.ids) == 4, timeout=self.timeout, message="replay all")
        assert await broker.dead_letters(topic) == []
        assert sorted(other.ids) == sorted([first.id, second.id])

    # -- where a group starts ------------------------------------------------------------------

    async def test_late_subscriber_receives_earlier_events(self, connect: Connect) -> None:
        """A new group starts from the earliest retained event; with start="latest" it only
        gets what is published after it subscribed."""
        broker = await connect()
        topic = topic_name()
        before = [envelope(topic, i) for i in range(3)]
        await broker.publish(topic, before)
        earliest, latest = Recorder(), Recorder()
        await broker.subscribe(topic, "Early", earliest)
        await broker.subscribe(topic, "Late", latest, start="latest")
        await broker.publish(topic, [after := envelope(topic, "after")])
        await wait_until(
            lambda: len(earliest.ids) == 4 and len(latest.ids) == 1, timeout=self.timeout,
            message="both groups",
        )  # fmt: skip
        assert earliest.ids == [*(e.id for e in before), after.id]
        assert latest.ids == [after.id]

    async def test_group_resumes_where_it_stopped(self, connect: Connect) -> None:
        """A group that unsubscribes and comes back gets only what it has not acknowledged,
        even with start="earliest"."""
        broker = await connect()
        topic = topic_name()
        got = Recorder()
        subscription = await broker.subscribe(topic, "G", got)
        await broker.publish(topic, [envelope(topic, i) for i in range(3)])
        await wait_until(lambda: len(got.ids) == 3, timeout=self.timeout, message="first three")
        await subscription.aclose()
        later = [envelope(topic, i) for i in range(3, 5)]
        await broker.publish(topic, later)
        again = Recorder()
        await broker.subscribe(topic, "G", again, start="earliest")
        await wait_until(lambda: len(again.ids) == 2, timeout=self.timeout, message="the rest")
        assert again.ids == [e.id for e in later]

    async def test_reader_without_group_follows_the_topic(self, connect: Connect) -> None:
        """An ephemeral reader (group None) sees events published after it started."""
        broker = await connect()
        topic = topic_name()
        await broker.publish(topic, [envelope(topic, "old")])
        got = Recorder()
        reader = await broker.subscribe(topic, None, got, start="latest")
        await broker.publish(topic, [new := envelope(topic, "new")])
        await wait_until(lambda: got.ids == [new.id], timeout=self.timeout, message="new event")
        assert got.deliveries[0].group is None
        await reader.aclose()

    async def test_close_lets_in_flight_handlers_finish(self, connect: Connect) -> None:
        """Closing a subscription waits for the handler that is running, and its success counts:
        the event is not delivered again to the next member."""
        broker = await connect()
        topic = topic_name()
        entered, release = asyncio.Event(), asyncio.Event()
        finished: list[str] = []

        async def handler(delivery: Delivery) -> None:
            entered.set()
            await release.wait()
            finished.append(delivery.envelope.id)

        subscription = await broker.subscribe(topic, "G", handler)
        await broker.publish(topic, [sent := envelope(topic, "x")])
        await asyncio.wait_for(entered.wait(), TIMEOUT)
        closing = asyncio.create_task(subscription.aclose())
        await asyncio.sleep(0)
        assert not closing.done()
        release.set()
        await asyncio.wait_for(closing, TIMEOUT)
        assert finished == [sent.id]
        after = Recorder()
        await broker.subscribe(topic, "G", after)
        await broker.publish(topic, [marker := envelope(topic, "marker")])
        await wait_until(lambda: marker.id in after.ids, timeout=self.timeout, message="marker")
        assert after.ids == [marker.id]

    async def test_bad_subscribe_arguments_are_named(self, connect: Connect) -> None:
        """A bad start position or attempt count is a ValueError saying what is allowed."""
        broker = await connect()
        with pytest.raises(ValueError, match="start must be 'earliest' or 'latest', not 'soon'"):
            await broker.subscribe(topic_name(), "G", Recorder(), start="soon")
        with pytest.raises(ValueError, match="max_attempts must be at least 1, not 0"):
            await broker.subscribe(topic_name(), "G", Recorder(), max_attempts=0)

    # -- through services: validation and context ----------------------------------------------

    async def test_bad_payload_is_dead_lettered_and_consumer_keeps_going(
        self, connect: Connect
    ) -> None:
        """An event whose payload does not match the subscriber's model goes straight to the
        dead-letter topic with the validation error; the next good event is handled."""
        broker = await connect()
        async with lumi.App([Emitter, Listener], broker=broker) as app:
            await broker.publish(
                "Emitter.emitted", [bad := envelope("Emitter.emitted", {"n": "x"})]
            )
            await app.client(Emitter).emit(n=5)
            listener = app.service(Listener)
            await wait_until(
                lambda: len(listener.seen) == 1, timeout=self.timeout, message="good one"
            )
            letters = await _wait_dead_letters(broker, "Emitter.emitted", 1, timeout=self.timeout)
            assert letters[0].envelope.id == bad.id and letters[0].attempts == 1
            assert "invalid payload" in letters[0].reason and "n:" in letters[0].reason
            assert listener.seen[0][0] == 5

    async def test_correlation_and_trace_reach_the_subscriber(self, connect: Connect) -> None:
        """The correlation id and the trace of the call that published an event reach the
        subscriber's lumi.context()."""
        broker = await connect()
        traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

        async def tracing(call: Call, next_handler: Handler) -> bytes:
            call.metadata.correlation_id = "corr-42"
            call.metadata.traceparent = traceparent
            return await next_handler(call)

        async with lumi.App(
            [Emitter, Listener], broker=broker, client_middlewares=[tracing]
        ) as app:
            await app.client(Emitter).emit(n=1)
            listener = app.service(Listener)
            await wait_until(lambda: len(listener.seen) == 1, timeout=self.timeout, message="event")
            n, correlation_id, received, kind = listener.seen[0]
            assert n == 1
            assert (correlation_id, kind) == ("corr-42", "event")
            # The same trace continues; each hop (call, publish, delivery) may add its own span.
            assert received is not None and received.split("-")[1] == traceparent.split("-")[1]

    async def test_idempotent_consumer_skips_a_duplicate(self, connect: Connect) -> None:
        """An event delivered twice (same id) reaches an idempotent handler once. (The events
        share a key, so the order asserted is one the contract promises: keyless events of two
        publishes may be handled in either order.)"""
        broker = await connect()
        async with lumi.App([Emitter, Listener], broker=broker) as app:
            dup = envelope("Emitter.emitted", {"n": 7}, key="k")
            await broker.publish("Emitter.emitted", [dup, dup])
            later = envelope("Emitter.emitted", {"n": 8}, key="k")
            await broker.publish("Emitter.emitted", [later])
            listener = app.service(Listener)
            await wait_until(lambda: 8 in listener.once, timeout=self.timeout, message="marker")
            await wait_until(lambda: len(listener.seen) == 3, timeout=self.timeout, message="all")
            assert listener.once == [7, 8]
            assert [n for n, *_ in listener.seen] == [7, 7, 8]


class Emitted(pydantic.BaseModel):
    n: int


class Emitter(lumi.Service):
    emitted = lumi.event(Emitted)

    @lumi.api
    async def emit(self, n: int) -> None:
        await self.emitted.publish(Emitted(n=n))


class Listener(lumi.Service):
    async def startup(self) -> None:
        self.seen: list[tuple[int, str | None, str | None, str]] = []
        self.once: list[int] = []

    @lumi.subscribe(Emitter.emitted, max_attempts=3)
    async def on_emitted(self, event: Emitted) -> None:
        ctx = lumi.context()
        assert ctx is not None
        self.seen.append((event.n, ctx.correlation_id, ctx.metadata.traceparent, ctx.kind))

    @lumi.subscribe(Emitter.emitted)
    @lumi.idempotent_consumer
    async def once_per_event(self, event: Emitted) -> None:
        self.once.append(event.n)


def _chain(*handlers: Callable[[Delivery], Awaitable[None]]) -> Callable[[Delivery], Any]:
    async def run(delivery: Delivery) -> None:
        for handler in handlers:
            await handler(delivery)

    return run


async def _wait_dead_letters(
    broker: Broker, topic: str, count: int, *, timeout: float = TIMEOUT
) -> list[Any]:
    letters: list[Any] = []

    async def enough() -> bool:
        letters[:] = await broker.dead_letters(topic)
        return len(letters) >= count

    await wait_until(enough, timeout=timeout, message=f"{count} dead letter(s) on {topic}")
    return letters
