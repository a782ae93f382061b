"""``asyncapi``: one AsyncAPI 3.0 document for the events of the given services.

A channel per topic (``<service>.<event>``); each message is the CloudEvents 1.0 structured JSON
envelope every Lumi broker carries, with the event's payload schema as ``data``; a ``send``
operation for the publishing service and a ``receive`` operation for every subscribing one
(``x-lumi-consumer-group`` names its group). Schemas are namespaced by service
(``Orders.OrderPlaced``) so services with same-named models never clash.
"""

from __future__ import annotations

from typing import Any

from lumi.codegen.base import GenerateRequest, Generator, dump_json
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
        return {"asyncapi.json": dump_json(document(interfaces, request.package))}


def document(interfaces: list[ServiceInterface], title: str = "lumi") -> dict[str, Any]:
    """The AsyncAPI document of the events of ``interfaces``."""
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
            _channel(channels, topic, key, event.doc)
            operations[f"{iface.name}.publish.{event_name}"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{topic}"},
                "summary": f"{iface.name} publishes {event_name}",
                "messages": [{"$ref": f"#/channels/{topic}/messages/{key}"}],
            }
    for iface in interfaces:
        for sub in iface.subscriptions:
            key = pascal(sub.topic)
            if key not in messages:  # published by a service outside this document
                messages[key] = {
                    "name": sub.topic,
                    "contentType": _CONTENT_TYPE,
                    "payload": envelope({}),
                }
                _channel(channels, sub.topic, key, "")
            operations[f"{iface.name}.{sub.handler}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{sub.topic}"},
                "summary": f"{iface.name} handles {sub.topic} with {sub.handler}",
                "messages": [{"$ref": f"#/channels/{sub.topic}/messages/{key}"}],
                "x-lumi-consumer-group": iface.name,
                "x-lumi-max-attempts": sub.max_attempts,
            }
    version = interfaces[0].version if len(interfaces) == 1 else "0.0.0"
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": f"{title} events",
            "version": version,
            "description": "Events of " + ", ".join(i.name for i in interfaces),
        },
        "defaultContentType": _CONTENT_TYPE,
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
