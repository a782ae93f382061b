"""CloudEvents on brokers whose messages have headers (Kafka, NATS): structured and binary mode.

*Structured* mode (Lumi's default) sends the JSON envelope of :mod:`lumi.model.envelope` as the
message body with ``content-type: application/cloudevents+json``. *Binary* mode sends the event's
``data`` as the body and every other attribute as a header named ``<prefix><attribute>``
(``ce_`` on Kafka, ``ce-`` on NATS, as the CloudEvents protocol bindings say), with
``content-type`` carrying ``datacontenttype``. Both modes also carry ``traceparent`` and
``x-correlation-id`` as plain headers, so tracing tools and log shippers that read headers (and
not bodies) see them. Reading detects the mode by the ``<prefix>specversion`` header.
"""

from __future__ import annotations

from collections.abc import Mapping

import pydantic_core

from lumi.model.envelope import Envelope, EnvelopeError

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json; charset=UTF-8"
MODES = ("structured", "binary")


def encode(envelope: Envelope, *, mode: str, prefix: str) -> tuple[bytes, dict[str, str]]:
    """The body and headers of ``envelope`` in ``mode`` (structured or binary)."""
    headers: dict[str, str] = {}
    if mode == "binary":
        for name, value in envelope.attributes().items():
            if name == "datacontenttype":
                headers["content-type"] = value
            else:
                headers[prefix + name] = value
        body = envelope.data
    else:
        headers["content-type"] = STRUCTURED_CONTENT_TYPE
        body = envelope.to_json()
    if envelope.traceparent:
        headers["traceparent"] = envelope.traceparent
    if envelope.correlationid:
        headers["x-correlation-id"] = envelope.correlationid
    return body, headers


def decode(body: bytes, headers: Mapping[str, str], *, prefix: str) -> Envelope:
    """The event in a message of either mode; EnvelopeError if it is not one."""
    if prefix + "specversion" not in headers:
        return Envelope.from_json(body)
    attributes: dict[str, object] = {
        name[len(prefix) :]: value for name, value in headers.items() if name.startswith(prefix)
    }
    content_type = headers.get("content-type", "application/json")
    if not _is_json(content_type):
        raise EnvelopeError(
            f"binary-mode event with content type {content_type!r}: Lumi events carry JSON data"
        )
    try:
        pydantic_core.from_json(body)
    except ValueError as exc:
        raise EnvelopeError(f"binary-mode event data is not JSON: {exc}") from None
    attributes["datacontenttype"] = content_type.split(";", 1)[0].strip()
    attributes["data"] = None  # validated above; the raw bytes are kept below
    envelope = Envelope.from_dict(attributes)
    envelope.data = body
    return envelope


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json") or media == "text/json"


def header_map(pairs: object) -> dict[str, str]:
    """Kafka/NATS headers (a list of (name, bytes) pairs, or a mapping) as lower-cased text."""
    items = pairs.items() if isinstance(pairs, dict) else (pairs or [])
    out: dict[str, str] = {}
    for name, value in items:  # type: ignore[attr-defined]
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if value is not None:
            out[str(name).lower()] = str(value)
    return out
