"""Events on the wire: the CloudEvents 1.0 envelope, and the sink a service publishes through.

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
import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import pydantic
import pydantic_core

from lumi.context import Metadata, context, new_id, outbound_metadata
from lumi.errors import InvalidArgument

if TYPE_CHECKING:
    from lumi.brokers.base import Broker
    from lumi.service import EventSpec

SPEC_VERSION = "1.0"
_REQUIRED = ("specversion", "id", "source", "type")
_KNOWN = frozenset(
    {
        "specversion", "id", "source", "type", "time", "subject", "datacontenttype",
        "dataschema", "data", "traceparent", "correlationid", "partitionkey",
    }
)  # fmt: skip
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


PublishHandler = Callable[[str, Sequence[Envelope]], Awaitable[None]]
PublishMiddleware = Callable[[str, Sequence[Envelope], PublishHandler], Awaitable[None]]
"""Wraps every publish: ``async (topic, envelopes, next) -> None`` (tracing, metrics)."""


def compose_publish(
    handler: PublishHandler, middlewares: Iterable[PublishMiddleware]
) -> PublishHandler:
    """Wrap a broker's publish so that the first middleware is the outermost."""
    for middleware in reversed(list(middlewares)):
        handler = _bind_publish(middleware, handler)
    return handler


def _bind_publish(middleware: PublishMiddleware, next_handler: PublishHandler) -> PublishHandler:
    async def publish(topic: str, envelopes: Sequence[Envelope]) -> None:
        await middleware(topic, envelopes, next_handler)

    return publish


def now_rfc3339() -> str:
    """The current UTC time as RFC 3339 with microseconds, e.g. 2026-01-02T03:04:05.000006Z."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")[:-6] + "Z"


class EventSink:
    """How one service publishes: validates payloads, wraps them, hands them to the broker."""

    def __init__(
        self,
        broker: Broker,
        service: str,
        *,
        app: str = "app",
        middlewares: Iterable[PublishMiddleware] = (),
    ) -> None:
        self.broker = broker
        self.service = service
        self.source = f"/lumi/{app}/{service}"
        self._adapters: dict[int, pydantic.TypeAdapter[Any]] = {}
        self._send: PublishHandler = compose_publish(self._to_broker, middlewares)

    async def _to_broker(self, topic: str, envelopes: Sequence[Envelope]) -> None:
        # Looked up per publish, so a test that wraps broker.publish sees every event.
        await self.broker.publish(topic, envelopes)

    def envelope(
        self,
        spec: EventSpec[Any],
        payload: Any,
        key: str | None = None,
        *,
        meta: Metadata | None = None,
        time: str | None = None,
    ) -> Envelope:
        """A validated event; ``meta`` and ``time`` default to the current call's and now."""
        adapter = self._adapter(spec)
        try:
            value = adapter.validate_python(payload)
        except pydantic.ValidationError as exc:
            details = json.loads(exc.json(include_url=False, include_context=False))
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc']) or '(payload)'}: {error['msg']}"
                for error in details
            )
            raise InvalidArgument(
                f"invalid payload for event {spec.topic}: {problems}", details
            ) from None
        data = adapter.dump_json(value)
        if key is None and spec.key is not None:
            key_value = _field(value, spec.key)
            key = None if key_value is None else str(key_value)
        if meta is None:
            meta = _current_metadata()
        return Envelope(
            id=new_id(),
            source=self.source,
            type=spec.topic,
            data=data,
            time=time or now_rfc3339(),
            subject=key,
            traceparent=meta.traceparent,
            correlationid=meta.correlation_id,
            partitionkey=key,
        )

    async def publish(self, spec: EventSpec[Any], payload: Any, *, key: str | None = None) -> str:
        envelope = self.envelope(spec, payload, key)
        await self._send(spec.topic, [envelope])
        return envelope.id

    async def publish_many(
        self, spec: EventSpec[Any], payloads: list[Any], *, key: str | None = None
    ) -> list[str]:
        # One batch, one operation: the same metadata and timestamp for every event in it.
        meta, now = _current_metadata(), now_rfc3339()
        envelopes = [self.envelope(spec, p, key, meta=meta, time=now) for p in payloads]
        await self._send(spec.topic, envelopes)
        return [e.id for e in envelopes]

    def _adapter(self, spec: EventSpec[Any]) -> pydantic.TypeAdapter[Any]:
        adapter = self._adapters.get(id(spec))
        if adapter is None:
            from lumi.reflect import wire_adapter

            adapter = self._adapters[id(spec)] = wire_adapter(spec.model)
        return adapter


def _current_metadata() -> Metadata:
    """What an event published now carries: the handled call's metadata, or fresh metadata."""
    ctx = context()
    return outbound_metadata() if ctx is None else ctx.metadata


def _field(value: Any, name: str) -> Any:
    if isinstance(value, dict):
        return value.get(name)
    return getattr(value, name, None)
