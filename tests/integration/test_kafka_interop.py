"""Kafka interop with tools Lumi did not write: ``kcat`` reads what Lumi published and the
CloudEvents SDK parses it; a plain confluent-kafka producer's CloudEvents reach a Lumi service."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import confluent_kafka
import pydantic
import pytest
from cloudevents.core.bindings.kafka import KafkaMessage, from_kafka, to_binary, to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

import lumi
from lumi.brokers import create_broker
from lumi.brokers.kafka import KafkaBroker
from lumi.testing import wait_until
from tests.conformance.broker_contract import envelope
from tests.engines.kafka import Tansu

pytestmark = pytest.mark.slow

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture(scope="module")
def kcat(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., list[dict[str, object]]]:
    """``kcat(*args)``: the records Debian's kcat prints with ``-J`` (one JSON object a line).

    Debian 12's librdkafka (2.0.2) fails the ApiVersions handshake with tansu 0.6 ("Read
    underflow"; it works against Apache Kafka), so kcat runs on the newer librdkafka that the
    confluent-kafka wheel ships: the same C library and soname, loaded by the dynamic linker."""
    binary = shutil.which("kcat")
    if binary is None:
        pytest.fail("kcat is missing: run scripts/test-deps (Debian package kcat)")
    libs = Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs"
    found = sorted(libs.glob("librdkafka*.so*"))
    if not found:
        pytest.fail(f"no librdkafka in {libs} for kcat to load")
    libdir = tmp_path_factory.mktemp("librdkafka")
    (libdir / "librdkafka.so.1").symlink_to(found[0])
    env = {**os.environ, "LD_LIBRARY_PATH": str(libdir)}

    def run(*args: str) -> list[dict[str, object]]:
        out = subprocess.run(
            [binary, *args, "-J", "-e", "-q"], capture_output=True, text=True, timeout=60,
            check=True, env=env,
        ).stdout  # fmt: skip
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    return run


def as_kafka_message(record: dict[str, object]) -> KafkaMessage:
    flat = record.get("headers") or []
    assert isinstance(flat, list)
    headers = {str(flat[i]): str(flat[i + 1]).encode() for i in range(0, len(flat), 2)}
    key = record.get("key")
    payload = record["payload"]
    assert isinstance(payload, str)
    return KafkaMessage(
        headers=headers, key=key if isinstance(key, str) else None, value=payload.encode()
    )


@pytest.mark.parametrize("mode", ["structured", "binary"])
async def test_kcat_reads_and_the_sdk_parses_what_lumi_published(
    kafka_engine: Tansu, tmp_path: Path, mode: str, kcat: Callable[..., list[dict[str, object]]]
) -> None:
    """Events Lumi published (in either mode) come out of kcat as CloudEvents the SDK parses:
    every attribute, the tracing and correlation extensions, the partition key as record key."""
    prefix = f"t{uuid.uuid4().hex[:8]}."
    topic = "Orders.placed"
    sent = [
        envelope(
            topic, {"order": n, "text": "héllo"}, key=f"customer-{n % 2}",
            time="2026-01-02T03:04:05.000006Z", traceparent=TRACEPARENT, correlationid=f"corr-{n}",
        )
        for n in range(3)
    ]  # fmt: skip
    url = kafka_engine.url(f"prefix={prefix}&mode={mode}")
    async with create_broker(url, app_dir=tmp_path) as broker:
        await broker.publish(topic, sent)
    records = kcat("-b", kafka_engine.bootstrap, "-C", "-t", prefix + topic, "-o", "beginning")
    assert len(records) == 3
    by_id = {}
    for record in records:
        message = as_kafka_message(record)
        event = from_kafka(message, JSONFormat())
        by_id[event.get_id()] = (record, message, event)
    for sent_event in sent:
        record, message, event = by_id[sent_event.id]
        assert record["key"] == sent_event.partitionkey
        assert (event.get_source(), event.get_type()) == (sent_event.source, topic)
        assert event.get_data() == json.loads(sent_event.data)
        assert event.get_extension("traceparent") == TRACEPARENT
        assert event.get_extension("correlationid") == sent_event.correlationid
        assert event.get_extension("partitionkey") == sent_event.partitionkey
        assert message.headers["traceparent"] == TRACEPARENT.encode()
        if mode == "binary":
            assert message.headers["ce_id"] == sent_event.id.encode()
        else:
            assert message.headers["content-type"].startswith(b"application/cloudevents+json")


class Placed(pydantic.BaseModel):
    order: int
    customer: str


class Shop(lumi.Service):
    placed = lumi.event(Placed, key="customer")


class Ledger(lumi.Service):
    async def startup(self) -> None:
        self.got: list[tuple[Placed, str | None]] = []

    @lumi.subscribe(Shop.placed, max_attempts=1)
    async def on_placed(self, event: Placed) -> None:
        ctx = lumi.context()
        assert ctx is not None
        self.got.append((event, ctx.correlation_id))


@pytest.mark.parametrize("mode", ["binary", "structured"])
async def test_plain_producer_events_reach_a_lumi_service(
    kafka_engine: Tansu, tmp_path: Path, mode: str
) -> None:
    """A CloudEvent made by the SDK and sent by a plain confluent-kafka producer reaches a Lumi
    subscriber as a validated model (with its correlation id); one whose data does not match
    the model is dead-lettered with the validation error."""
    prefix = f"t{uuid.uuid4().hex[:8]}."
    broker = create_broker(kafka_engine.url(f"prefix={prefix}"), app_dir=tmp_path)
    assert isinstance(broker, KafkaBroker)
    async with lumi.App([Ledger], broker=broker) as app:
        producer = confluent_kafka.Producer({"bootstrap.servers": kafka_engine.bootstrap})
        encode = to_binary if mode == "binary" else to_structured
        for n, data in enumerate(({"order": 1, "customer": "ada"}, {"order": "one"})):
            event = CloudEvent(
                attributes={
                    "id": f"ext-{n}", "source": "/billing", "type": "Shop.placed",
                    "specversion": "1.0", "datacontenttype": "application/json",
                    "partitionkey": "ada", "correlationid": "corr-ext",
                },
                data=data,
            )  # fmt: skip
            message = encode(event, JSONFormat())
            producer.produce(
                prefix + "Shop.placed", message.value, message.key,
                headers=list(message.headers.items()),
            )  # fmt: skip
        assert producer.flush(30) == 0
        ledger = app.service(Ledger)
        await wait_until(lambda: len(ledger.got) == 1, timeout=30, message="the good event")
        assert ledger.got == [(Placed(order=1, customer="ada"), "corr-ext")]
        letters: list[object] = []

        async def dead_lettered() -> bool:
            letters[:] = await broker.dead_letters("Shop.placed", "Ledger")
            return len(letters) == 1

        await wait_until(dead_lettered, timeout=30, message="the bad event dead-lettered")
        letter = letters[0]
        assert letter.envelope.id == "ext-1"  # type: ignore[attr-defined]
        assert "invalid payload" in letter.reason and "order" in letter.reason  # type: ignore[attr-defined]
