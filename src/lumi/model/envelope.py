"""Events on the wire: the CloudEvents 1.0 envelope every broker carries.

Every broker carries the same structured-mode CloudEvents JSON::

    {"specversion": "1.0", "id": "...", "source": "/lumi/<app>/<service>",
     "type": "<service>.<event>", "time": "2026-01-01T00:00:00.000000Z",
     "datacontenttype": "application/json", "subject": "<partition key>",
     "traceparent": "00-...", "correlationid": "...", "partitionkey": "...", "data": {...}}

so a consumer that is not Lumi can read them. ``traceparent`` is the CloudEvents distributed
tracing extension and ``partitionkey`` the partitioning extension; ``correlationid`` is Lumi's.
An event in a dead-letter topic also carries ``deadletterreason``, ``deadlettergroup``,
``deadletterattempts`` and ``deadlettertime``.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pydantic_core

from lumi.model.context import Metadata

SPEC_VERSION = "1.0"
_REQUIRED = ("specversion", "id", "source", "type")
_KNOWN = frozenset(
    {
        "specversion", "id", "source", "type", "time", "subject", "datacontenttype",
        "dataschema", "data", "traceparent", "correlationid", "partitionkey",
    }
)  # fmt: skip
_STR = frozenset({str})
_OPTIONAL = (
    "time", "datacontenttype", "subject", "dataschema", "traceparent", "correlationid",
    "partitionkey",
)  # fmt: skip
DEAD_LETTER_EXTENSIONS = (
    "deadletterreason",
    "deadlettergroup",
    "deadletterattempts",
    "deadlettertime",
)


class EnvelopeError(ValueError):
    """Bytes that are not a valid CloudEvents 1.0 structured JSON event."""


@dataclasses.dataclass(slots=True)
class Envelope:
    """One event: CloudEvents context attributes plus the JSON ``data`` as raw bytes."""

    id: str
    source: str
    type: str
    data: bytes
    time: str = ""
    subject: str | None = None
    datacontenttype: str = "application/json"
    traceparent: str | None = None
    correlationid: str | None = None
    partitionkey: str | None = None
    dataschema: str | None = None
    extensions: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def topic(self) -> str:
        return self.type

    @property
    def key(self) -> str | None:
        """The partition key: events with the same key are delivered in publish order."""
        return self.partitionkey

    def dead_lettered(self, *, group: str, reason: str, attempts: int) -> Envelope:
        """A copy of this event for a dead-letter topic, recording why it got there."""
        extensions = {
            **self.extensions,
            "deadletterreason": reason,
            "deadlettergroup": group,
            "deadletterattempts": str(attempts),
            "deadlettertime": now_rfc3339(),
        }
        return dataclasses.replace(self, extensions=extensions)

    def revived(self) -> Envelope:
        """This event as it was before it was dead-lettered (what a replay delivers)."""
        extensions = {k: v for k, v in self.extensions.items() if k not in DEAD_LETTER_EXTENSIONS}
        return dataclasses.replace(self, extensions=extensions)

    def metadata(self) -> Metadata:
        return Metadata(correlation_id=self.correlationid, traceparent=self.traceparent)

    def attributes(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            "specversion": SPEC_VERSION,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "datacontenttype": self.datacontenttype,
        }
        if self.time:
            attrs["time"] = self.time
        for name in ("subject", "dataschema", "traceparent", "correlationid", "partitionkey"):
            value = getattr(self, name)
            if value is not None:
                attrs[name] = value
        attrs.update(self.extensions)
        return attrs

    def to_json(self) -> bytes:
        """Structured-mode CloudEvents JSON; ``data`` is spliced in as the bytes it already is."""
        head = pydantic_core.to_json(self.attributes())
        return head[:-1] + b',"data":' + self.data + b"}"

    @classmethod
    def from_json(cls, raw: bytes | str) -> Envelope:
        try:
            obj = pydantic_core.from_json(raw)
        except ValueError as exc:
            raise EnvelopeError(f"event is not JSON: {exc}") from None
        if type(obj) is dict and _KNOWN.issuperset(obj):
            # The usual event (no extensions, every attribute a string): all of from_dict's
            # checks in three C-level calls; anything else takes from_dict's path to say why.
            data = obj.pop("data", None)
            get = obj.get
            if _STR.issuperset(map(type, obj.values())) and get("specversion") == SPEC_VERSION:
                id_, source, type_ = get("id"), get("source"), get("type")
                if id_ is not None and source is not None and type_ is not None:
                    return cls(
                        id_, source, type_, pydantic_core.to_json(data), get("time") or "",
                        get("subject"), get("datacontenttype") or "application/json",
                        get("traceparent"), get("correlationid"), get("partitionkey"),
                        get("dataschema"), {},
                    )  # fmt: skip
            obj["data"] = data
        if not isinstance(obj, dict):
            raise EnvelopeError("event is not a JSON object")
        return cls.from_dict(obj)

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> Envelope:
        # Plain lookups and one scan for extensions: this runs for every event a consumer
        # reads (measured at 5 µs, against 9 µs for a dict comprehension per attribute group).
        get = obj.get
        id_, source, type_ = get("id"), get("source"), get("type")
        if type(id_) is not str or type(source) is not str or type(type_) is not str:
            missing = [name for name in _REQUIRED if not isinstance(get(name), str)]
            raise EnvelopeError(f"event lacks CloudEvents attribute(s): {', '.join(missing)}")
        specversion = get("specversion")
        if specversion != SPEC_VERSION:
            if not isinstance(specversion, str):
                raise EnvelopeError("event lacks CloudEvents attribute(s): specversion")
            raise EnvelopeError(f"unsupported CloudEvents specversion {specversion!r}")
        extensions: dict[str, str] = {}
        for name in obj.keys() - _KNOWN:
            value = obj[name]
            if name == "data_base64":
                raise EnvelopeError("binary (data_base64) events are not supported; send JSON data")
            if isinstance(value, bool):
                extensions[name] = "true" if value else "false"
            elif isinstance(value, str | int | float):
                extensions[name] = str(value)
            else:
                raise EnvelopeError(
                    f"CloudEvents extension {name!r} must be a string, number or boolean"
                )
        time, content_type, subject, dataschema, traceparent, correlationid, key = optional = (
            get("time"), get("datacontenttype"), get("subject"), get("dataschema"),
            get("traceparent"), get("correlationid"), get("partitionkey"),
        )  # fmt: skip
        for value in optional:
            if value is not None and type(value) is not str:
                name = next(n for n in _OPTIONAL if get(n) is value)
                raise EnvelopeError(
                    f"CloudEvents attribute {name!r} must be a string, not {value!r}"
                )
        return cls(
            id_, source, type_, pydantic_core.to_json(get("data")), time or "", subject,
            content_type or "application/json", traceparent, correlationid, key, dataschema,
            extensions,
        )  # fmt: skip


def now_rfc3339() -> str:
    """The current UTC time as RFC 3339 with microseconds, e.g. 2026-01-02T03:04:05.000006Z."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")[:-6] + "Z"
