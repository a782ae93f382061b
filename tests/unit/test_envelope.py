"""The CloudEvents envelope: compatible with the official SDK both ways, strict on bad input."""

from __future__ import annotations

import datetime
import json

import pytest
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as CoreCloudEvent
from cloudevents.v1.conversion import to_structured
from cloudevents.v1.http import CloudEvent, from_json

from lumi.model.envelope import Envelope, EnvelopeError

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def lumi_event() -> Envelope:
    return Envelope(
        id="ev-1",
        source="/lumi/shop/Orders",
        type="Orders.placed",
        data=b'{"order_id":"o-1","total_cents":100}',
        time="2026-01-02T03:04:05.000006Z",
        subject="o-1",
        traceparent=TRACEPARENT,
        correlationid="corr-1",
        partitionkey="o-1",
        extensions={"tenant": "acme"},
    )


def test_sdk_parses_what_lumi_writes() -> None:
    """The SDK (v1 API) reads every attribute, extension and the JSON data of a Lumi event."""
    event = from_json(lumi_event().to_json())
    assert event.get_attributes() == {
        "specversion": "1.0",
        "id": "ev-1",
        "source": "/lumi/shop/Orders",
        "type": "Orders.placed",
        "datacontenttype": "application/json",
        "time": "2026-01-02T03:04:05.000006Z",
        "subject": "o-1",
        "traceparent": TRACEPARENT,
        "correlationid": "corr-1",
        "partitionkey": "o-1",
        "tenant": "acme",
    }
    assert event.get_data() == {"order_id": "o-1", "total_cents": 100}


def test_sdk_core_format_parses_what_lumi_writes() -> None:
    """The SDK's core JSON format reads a Lumi event, including the time as a datetime."""
    event = JSONFormat().read(None, lumi_event().to_json())
    attributes = event.get_attributes()
    assert attributes["time"] == datetime.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=datetime.UTC)
    assert attributes["partitionkey"] == "o-1" and attributes["correlationid"] == "corr-1"
    assert event.get_data() == {"order_id": "o-1", "total_cents": 100}


def test_lumi_accepts_what_the_sdk_writes() -> None:
    """A structured event written by the SDK (v1 API) becomes an Envelope with every field."""
    event = CloudEvent(
        {
            "type": "Orders.placed",
            "source": "/elsewhere",
            "subject": "o-9",
            "partitionkey": "o-9",
            "correlationid": "corr-9",
            "traceparent": TRACEPARENT,
            "priority": 3,
        },
        {"order_id": "o-9"},
    )
    headers, body = to_structured(event)
    assert headers["content-type"] == "application/cloudevents+json"
    envelope = Envelope.from_json(body)
    assert (envelope.id, envelope.type, envelope.source) == (
        event["id"],
        "Orders.placed",
        "/elsewhere",
    )
    assert envelope.time == event["time"]
    assert (envelope.subject, envelope.partitionkey, envelope.correlationid) == (
        "o-9",
        "o-9",
        "corr-9",
    )
    assert envelope.traceparent == TRACEPARENT
    assert envelope.extensions == {"priority": "3"}
    assert json.loads(envelope.data) == {"order_id": "o-9"}


def test_lumi_accepts_what_the_sdk_core_writes() -> None:
    """An event written by the SDK's core JSON format becomes an Envelope."""
    event = CoreCloudEvent(
        {"id": "c-1", "type": "A.b", "source": "/x", "specversion": "1.0", "partitionkey": "k"},
        {"z": 3},
    )
    envelope = Envelope.from_json(JSONFormat().write(event))
    assert (envelope.id, envelope.partitionkey, json.loads(envelope.data)) == ("c-1", "k", {"z": 3})
    assert envelope.time.endswith("Z")


def test_round_trip_through_the_sdk_is_lossless() -> None:
    """Lumi → SDK → Lumi gives back the same envelope."""
    original = lumi_event()
    _, body = to_structured(from_json(original.to_json()))
    assert Envelope.from_json(body) == original


def test_dead_letter_extensions_come_off_on_revival() -> None:
    """A dead-lettered copy records why; reviving it gives back the original event."""
    original = lumi_event()
    stored = original.dead_lettered(group="Mailer", reason="boom", attempts=3)
    assert stored.extensions["deadletterreason"] == "boom"
    assert stored.extensions["deadletterattempts"] == "3"
    assert from_json(stored.to_json())["deadlettergroup"] == "Mailer"
    assert Envelope.from_json(stored.to_json()).revived() == original


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"not json", "event is not JSON"),
        (b"[1]", "not a JSON object"),
        (b'{"specversion":"1.0","id":"1","type":"t"}', "lacks CloudEvents attribute(s): source"),
        (b'{"specversion":"0.3","id":"1","source":"s","type":"t"}', "specversion '0.3'"),
        (b'{"specversion":"1.0","id":"1","source":"s","type":"t","data_base64":"AA=="}', "binary"),
        (b'{"specversion":"1.0","id":"1","source":"s","type":"t","x":{"a":1}}', "extension 'x'"),
        (b'{"specversion":"1.0","id":"1","source":"s","type":"t","subject":5}', "'subject'"),
    ],
)
def test_bad_envelopes_are_rejected_with_the_reason(raw: bytes, message: str) -> None:
    """Bytes that are not a structured JSON CloudEvent raise EnvelopeError saying why."""
    with pytest.raises(EnvelopeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Envelope.from_json(raw)
