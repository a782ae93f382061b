"""Publishing: the sink through which a service publishes events.

A publish is a :class:`~lumi.pipeline.call.Call` of ``kind="publish"`` carrying the batch of
CloudEvents envelopes, so it goes through middleware of the same shape as calls and deliveries
(the publish observer adds its span, the traceparent of each envelope and the counter) before
the broker stores it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import pydantic

from lumi.model.context import Metadata, context, new_id, outbound_metadata
from lumi.model.envelope import Envelope, now_rfc3339
from lumi.model.errors import InvalidArgument
from lumi.pipeline.call import Call, Handler, Middleware, compose

if TYPE_CHECKING:
    from lumi.model.service import EventSpec

_EMPTY = b""


class Publisher(Protocol):
    """What a sink publishes to: a broker (:class:`lumi.brokers.base.Broker`)."""

    async def publish(self, topic: str, envelopes: Sequence[Envelope]) -> None: ...


class EventSink:
    """How one service publishes: validates payloads, wraps them, hands them to the broker."""

    def __init__(
        self,
        broker: Publisher,
        service: str,
        *,
        app: str = "app",
        middlewares: Iterable[Middleware] = (),
    ) -> None:
        self.broker = broker
        self.service = service
        self.source = f"/lumi/{app}/{service}"
        self._adapters: dict[int, pydantic.TypeAdapter[Any]] = {}
        self._send: Handler = compose(self._to_broker, middlewares)

    async def _to_broker(self, call: Call) -> bytes:
        # Looked up per publish, so a test that wraps broker.publish sees every event.
        await self.broker.publish(call.topic or "", call.envelopes)
        return _EMPTY

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
        await self.send(spec.topic, [envelope])
        return envelope.id

    async def publish_many(
        self, spec: EventSpec[Any], payloads: list[Any], *, key: str | None = None
    ) -> list[str]:
        # One batch, one operation: the same metadata and timestamp for every event in it.
        meta, now = _current_metadata(), now_rfc3339()
        envelopes = [self.envelope(spec, p, key, meta=meta, time=now) for p in payloads]
        await self.send(spec.topic, envelopes)
        return [e.id for e in envelopes]

    async def send(self, topic: str, envelopes: Sequence[Envelope]) -> None:
        """Publish ready-made envelopes on ``topic`` through the publish middleware."""
        first = envelopes[0] if envelopes else None
        meta = Metadata(
            correlation_id=first.correlationid if first else None,
            traceparent=first.traceparent if first else None,
        )
        event = topic.rsplit(".", 1)[-1]
        await self._send(
            Call(self.service, event, _EMPTY, meta, "publish", topic, envelopes=envelopes)
        )

    def _adapter(self, spec: EventSpec[Any]) -> pydantic.TypeAdapter[Any]:
        adapter = self._adapters.get(id(spec))
        if adapter is None:
            from lumi.model.reflect import wire_adapter

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
