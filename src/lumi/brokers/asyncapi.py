"""How each network broker describes itself in an AsyncAPI document (servers and bindings).

:func:`describe` turns a service's ``events`` URL into a
:class:`~lumi.codegen.base.BrokerView`: the AsyncAPI
server, and for each channel its address (the broker's own name for the topic) and bindings,
for each receive operation the consumer group, for each message the key. The embedded log and
the memory broker are Lumi's own (no protocol a non-Lumi client speaks), so they add nothing.
Only hosts and naming options are read from the URL; secrets never reach the document.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from lumi.brokers import _options, scheme_of
from lumi.brokers._kafka_config import group_id
from lumi.brokers._nats_config import durable_name
from lumi.codegen.base import BrokerView

KAFKA_BINDINGS = "0.5.0"
NATS_BINDINGS = "0.1.0"
SNS_BINDINGS = "0.1.0"


class KafkaView(BrokerView):
    protocol = "kafka"

    def __init__(self, hosts: list[str], options: dict[str, str]) -> None:
        super().__init__(hosts, options)
        self.prefix = options.get("prefix", "")
        self.binary = options.get("mode") == "binary"
        if options.get("security.protocol", "").upper() in ("SSL", "SASL_SSL"):
            self.protocol = "kafka-secure"

    def address(self, topic: str) -> str:
        return self.prefix + topic

    def channel_bindings(self, topic: str) -> dict[str, Any]:
        binding: dict[str, Any] = {
            "topic": self.address(topic),
            "partitions": int(self.options.get("partitions", "3")),
            "bindingVersion": KAFKA_BINDINGS,
        }
        replicas = int(self.options.get("replication_factor", "-1"))
        if replicas > 0:
            binding["replicas"] = replicas
        return {"kafka": binding}

    def receive_bindings(self, topic: str, group: str) -> dict[str, Any]:
        group_schema = {"type": "string", "enum": [group_id(self.prefix, group, topic)]}
        return {"kafka": {"groupId": group_schema, "bindingVersion": KAFKA_BINDINGS}}

    def message_bindings(self) -> dict[str, Any]:
        key = {"type": "string", "description": "The partition key: one key, one order"}
        return {"kafka": {"key": key, "bindingVersion": KAFKA_BINDINGS}}


class NatsView(BrokerView):
    protocol = "nats"

    def address(self, topic: str) -> str:
        return f"{self.options.get('prefix', 'lumi')}.{topic}"

    def receive_bindings(self, topic: str, group: str) -> dict[str, Any]:
        # A JetStream durable pull consumer plays the queue group's part: one replica gets each.
        return {"nats": {"queue": durable_name(group, topic), "bindingVersion": NATS_BINDINGS}}


class RedisView(BrokerView):
    protocol = "redis"


class SnsView(BrokerView):
    protocol = "sns"

    def channel_bindings(self, topic: str) -> dict[str, Any]:
        # SNS topic names allow letters, digits, '-' and '_'.
        name = topic.replace(".", "-")
        return {"sns": {"name": name, "bindingVersion": SNS_BINDINGS}}


VIEWS: dict[str, type[BrokerView]] = {
    "kafka": KafkaView,
    "nats": NatsView,
    "redis": RedisView,
    "sns": SnsView,
}


def describe(url: str) -> BrokerView | None:
    """The AsyncAPI view of an ``events`` URL, or None for Lumi's own brokers."""
    scheme = scheme_of(url)
    view = VIEWS.get(scheme)
    if view is None or "://" not in url:
        return None
    location, _, query = url.split("://", 1)[1].partition("?")
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    # Only naming options matter here, so ${VAR} references are left unread.
    options = {name: value for name, value in pairs if not _options.is_secret(name)}
    hosts = [h for h in location.rstrip("/").split(",") if h]
    if not hosts:  # e.g. sns://?region=eu-west-1: the region's public endpoint
        hosts = [f"{scheme}.{options.get('region', 'us-east-1')}.amazonaws.com"]
    found = view(hosts, options)
    found.url = url
    return found
