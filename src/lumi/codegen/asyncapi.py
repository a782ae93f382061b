"""``asyncapi``: one AsyncAPI 3.0 document for the events of the given services.

A channel per topic (``<service>.<event>``); each message is the CloudEvents 1.0 structured JSON
envelope every Lumi broker carries, with the event's payload schema as ``data``; a ``send``
operation for the publishing service and a ``receive`` operation for every subscribing one
(``x-lumi-consumer-group`` names its group). Schemas are namespaced by service
(``Orders.OrderPlaced``) so services with same-named models never clash.

Given the brokers the services' events travel on (``GenerateRequest.brokers``), the document
also describes
the brokers: a server per broker, and on channels, operations and messages the broker's own
names and bindings (Kafka topic, partitions, group id and key; NATS subject and consumer; ...;
see :mod:`lumi.brokers.asyncapi`). A channel lives on its publisher's broker.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from typing import Any

from lumi.codegen.base import BrokerView, GenerateRequest, Generator, dump_json
from lumi.codegen.schema import pascal
from lumi.model.interface import ServiceInterface

_REF_FROM = "#/$defs/"
_CONTENT_TYPE = "application/cloudevents+json"


def _relink(schema: Any, service: str) -> Any:
    if isinstance(schema, dict):
        out = {}
        for key, value in schema.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(_REF_FROM):
                out[key] = f"#/components/schemas/{service}.{value[len(_REF_FROM) :]}"
            else:
                out[key] = _relink(value, service)
        return out
    if isinstance(schema, list):
        return [_relink(v, service) for v in schema]
    return schema


def envelope(data: dict[str, Any]) -> dict[str, Any]:
    """The CloudEvents structured-mode schema around ``data``."""
    text = {"type": "string"}
    return {
        "type": "object",
        "required": ["specversion", "id", "source", "type", "data"],
        "properties": {
            "specversion": {"type": "string", "const": "1.0"},
            "id": {**text, "description": "Unique per event; consumers deduplicate by it."},
            "source": {**text, "description": "/lumi/<app>/<service>"},
            "type": {**text, "description": "The topic, <service>.<event>"},
            "time": {**text, "format": "date-time"},
            "subject": {**text, "description": "The partition key, when there is one"},
            "datacontenttype": {**text, "const": "application/json"},
            "traceparent": {**text, "description": "W3C trace context of the publisher"},
            "correlationid": {**text, "description": "The correlation id of the request"},
            "partitionkey": {**text, "description": "Events with one key keep their order"},
            "data": data,
        },
    }


class AsyncApiGenerator(Generator):
    name = "asyncapi"
    description = "AsyncAPI 3.0 for events (CloudEvents envelope)"

    def generate(self, request: GenerateRequest) -> dict[str, str]:
        interfaces = sorted(request.interfaces, key=lambda i: i.name)
        doc = document(interfaces, request.package, brokers=request.brokers)
        return {"asyncapi.json": dump_json(doc)}


def document(
    interfaces: list[ServiceInterface],
    title: str = "lumi",
    *,
    brokers: Mapping[str, BrokerView] | None = None,
) -> dict[str, Any]:
    """The AsyncAPI document of the events of ``interfaces`` (on ``brokers``: service → the
    view of the broker its events travel on)."""
    views = _Brokers(brokers or {})
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for iface in interfaces:
        for name, schema in sorted(iface.defs.items()):
            schemas[f"{iface.name}.{name}"] = _relink(schema, iface.name)
        for event_name in sorted(iface.events):
            event = iface.events[event_name]
            topic = iface.topic(event_name)
            key = pascal(topic)
            messages[key] = {
                "name": topic,
                "title": f"{topic} event",
                "summary": event.doc or f"{iface.name} published {event_name}.",
                "contentType": _CONTENT_TYPE,
                "payload": envelope(_relink(event.payload, iface.name)),
            }
            if event.key:
                messages[key]["x-lumi-partition-key-field"] = event.key
            views.message(messages[key], iface.name)
            _channel(channels, topic, key, event.doc)
            views.channel(channels[topic], topic, iface.name)
            operations[f"{iface.name}.publish.{event_name}"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{topic}"},
                "summary": f"{iface.name} publishes {event_name}",
                "messages": [{"$ref": f"#/channels/{topic}/messages/{key}"}],
            }
    for iface in interfaces:
        per_topic = collections.Counter(sub.topic for sub in iface.subscriptions)
        for sub in iface.subscriptions:
            key = pascal(sub.topic)
            if key not in messages:  # published by a service outside this document
                messages[key] = {
                    "name": sub.topic,
                    "contentType": _CONTENT_TYPE,
                    "payload": envelope({}),
                }
                views.message(messages[key], iface.name)
                _channel(channels, sub.topic, key, "")
                views.channel(channels[sub.topic], sub.topic, iface.name)
            # as the runtime names groups: two handlers of one service for one topic each
            # need a group of their own
            group = iface.name if per_topic[sub.topic] == 1 else f"{iface.name}-{sub.handler}"
            operations[f"{iface.name}.{sub.handler}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{sub.topic}"},
                "summary": f"{iface.name} handles {sub.topic} with {sub.handler}",
                "messages": [{"$ref": f"#/channels/{sub.topic}/messages/{key}"}],
                "x-lumi-consumer-group": group,
                "x-lumi-max-attempts": sub.max_attempts,
            }
            views.receive(operations[f"{iface.name}.{sub.handler}"], sub.topic, group, iface.name)
    version = interfaces[0].version if len(interfaces) == 1 else "0.0.0"
    doc: dict[str, Any] = {
        "asyncapi": "3.0.0",
        "info": {
            "title": f"{title} events",
            "version": version,
            "description": "Events of " + ", ".join(i.name for i in interfaces),
        },
        "defaultContentType": _CONTENT_TYPE,
    }
    if views.servers:
        doc["servers"] = dict(sorted(views.servers.items()))
    return doc | {
        "channels": dict(sorted(channels.items())),
        "operations": dict(sorted(operations.items())),
        "components": {"messages": dict(sorted(messages.items())), "schemas": schemas},
    }


def _channel(channels: dict[str, Any], topic: str, key: str, doc: str) -> None:
    channels[topic] = {
        "address": topic,
        "messages": {key: {"$ref": f"#/components/messages/{key}"}},
    }
    if doc:
        channels[topic]["description"] = doc


class _Brokers:
    """The servers of a document and what each service's broker adds to its parts."""

    def __init__(self, brokers: Mapping[str, BrokerView]) -> None:
        self.servers: dict[str, Any] = {}
        self._views: dict[str, tuple[str, BrokerView]] = {}
        ids: dict[str, str] = {}
        for service, view in sorted(brokers.items()):
            url = view.url
            if url not in ids:
                server_id = view.protocol.split("-")[0]
                n = sum(1 for known in ids.values() if known.split("-")[0] == server_id)
                ids[url] = server_id if n == 0 else f"{server_id}-{n + 1}"
                self.servers[ids[url]] = view.server()
            self._views[service] = (ids[url], view)

    def channel(self, channel: dict[str, Any], topic: str, service: str) -> None:
        found = self._views.get(service)
        if found is None or "servers" in channel:
            return
        server_id, view = found
        channel["address"] = view.address(topic)
        channel["servers"] = [{"$ref": f"#/servers/{server_id}"}]
        if bindings := view.channel_bindings(topic):
            channel["bindings"] = bindings

    def receive(self, operation: dict[str, Any], topic: str, group: str, service: str) -> None:
        found = self._views.get(service)
        if found is not None and (bindings := found[1].receive_bindings(topic, group)):
            operation["bindings"] = bindings

    def message(self, message: dict[str, Any], service: str) -> None:
        found = self._views.get(service)
        if found is None:
            return
        view = found[1]
        if bindings := view.message_bindings():
            message["bindings"] = bindings
        if view.binary:  # CloudEvents binary mode: data is the payload, attributes are headers
            message["contentType"] = "application/json"
            message["headers"] = _binary_headers(message["payload"])
            message["payload"] = message["payload"]["properties"]["data"]


def _binary_headers(structured: dict[str, Any]) -> dict[str, Any]:
    props = structured["properties"]
    headers = {
        f"ce_{name}": schema
        for name, schema in props.items()
        if name not in ("data", "datacontenttype")
    }
    headers["content-type"] = {"type": "string", "const": "application/json"}
    required = [f"ce_{name}" for name in structured["required"] if name != "data"]
    return {"type": "object", "required": required, "properties": headers}
