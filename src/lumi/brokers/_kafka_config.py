"""The Kafka broker's configuration: Lumi's options and librdkafka's, from the ``events`` URL.

``kafka://h1:9092,h2:9092?partitions=6&acks=all&linger.ms=5&security.protocol=SASL_SSL&
sasl.mechanism=PLAIN&sasl.username=app&sasl.password=${KAFKA_PASSWORD}``

Lumi's own options are listed in :data:`LUMI_OPTIONS`; every other option is a librdkafka
configuration property (https://github.com/confluentinc/librdkafka/blob/master/CONFIGURATION.md),
given to the producer, the consumers or both as the property belongs, and checked by librdkafka
when the broker starts.
"""

from __future__ import annotations

from typing import Any

from lumi.brokers import _options as opt
from lumi.brokers._cloudevents import MODES
from lumi.model.errors import ConfigError

LUMI_OPTIONS = [
    "partitions",
    "replication_factor",
    "create_topics",
    "mode",
    "prefix",
    "concurrency",
]

# librdkafka properties only one side understands (it warns about the others).
PRODUCER_ONLY = frozenset(
    {
        "acks",
        "request.required.acks",
        "linger.ms",
        "queue.buffering.max.ms",
        "batch.size",
        "batch.num.messages",
        "compression.type",
        "compression.codec",
        "compression.level",
        "enable.idempotence",
        "retries",
        "message.send.max.retries",
        "delivery.timeout.ms",
        "message.timeout.ms",
        "transactional.id",
        "transaction.timeout.ms",
        "max.in.flight.requests.per.connection",
        "max.in.flight",
        "partitioner",
        "queue.buffering.max.messages",
        "queue.buffering.max.kbytes",
        "request.timeout.ms",
        "enable.gapless.guarantee",
        "sticky.partitioning.linger.ms",
        "retry.backoff.ms",
    }
)
CONSUMER_ONLY = frozenset(
    {
        "session.timeout.ms",
        "heartbeat.interval.ms",
        "max.poll.interval.ms",
        "partition.assignment.strategy",
        "group.instance.id",
        "group.protocol",
        "group.remote.assignor",
        "isolation.level",
        "fetch.min.bytes",
        "fetch.wait.max.ms",
        "fetch.max.bytes",
        "max.partition.fetch.bytes",
        "fetch.message.max.bytes",
        "fetch.error.backoff.ms",
        "queued.min.messages",
        "queued.max.messages.kbytes",
        "check.crcs",
        "coordinator.query.interval.ms",
        "auto.commit.interval.ms",
    }
)
# Lumi decides these; a URL that sets them would break the contract.
RESERVED = frozenset(
    {
        "bootstrap.servers",
        "metadata.broker.list",
        "group.id",
        "enable.auto.commit",
        "enable.auto.offset.store",
        "auto.offset.reset",
        "enable.partition.eof",
    }
)


def parse_url(url: str) -> tuple[list[str], dict[str, str], dict[str, Any]]:
    """``(servers, librdkafka properties, Lumi options)`` of a ``kafka://`` URL."""
    servers, pairs = opt.split_url(url, "kafka")
    client: dict[str, str] = {}
    lumi: dict[str, Any] = {}
    for name, raw in pairs:
        value = opt.resolve(name, raw, "kafka")
        if name == "partitions":
            lumi[name] = opt.parse_int(name, value, "kafka")
        elif name == "replication_factor":
            lumi[name] = opt.parse_int(name, value, "kafka", minimum=-1)
        elif name == "concurrency":
            lumi[name] = opt.parse_int(name, value, "kafka")
        elif name == "create_topics":
            lumi[name] = opt.parse_bool(name, value, "kafka")
        elif name == "mode":
            if value not in MODES:
                raise ConfigError(f"events: kafka option mode is one of {MODES}, not {value!r}")
            lumi[name] = value
        elif name == "prefix":
            lumi[name] = value
        elif name in RESERVED:
            raise ConfigError(
                f"events: kafka option {name!r} is set by Lumi (hosts go before the '?'; "
                f"consumer groups are the subscribing services)"
            )
        elif "." in name or name in ("acks", "debug", "retries", "partitioner"):
            client[name] = value
        else:
            raise opt.unknown(name, "kafka", [*LUMI_OPTIONS, "<any librdkafka property>"])
    return servers, client, lumi


def role_config(common: dict[str, Any], role: str) -> dict[str, Any]:
    """The properties of ``common`` that the ``role`` (producer, consumer, admin) takes."""
    drop = {
        "producer": CONSUMER_ONLY,
        "consumer": PRODUCER_ONLY,
        "admin": PRODUCER_ONLY | CONSUMER_ONLY,
    }[role]
    return {name: value for name, value in common.items() if name not in drop}


def producer_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """Durable, ordered, duplicate-free publishing unless the URL says otherwise: acks from all
    in-sync replicas and the idempotent producer (which needs acks=all)."""
    out = dict(config)
    if "acks" not in out and "request.required.acks" not in out:
        out["acks"] = "all"
    acks = str(out.get("acks", out.get("request.required.acks")))
    out.setdefault("enable.idempotence", acks in ("all", "-1"))
    out.setdefault("linger.ms", 1)
    return out


def group_id(prefix: str, group: str, topic: str) -> str:
    """The Kafka consumer group of ``group`` on ``topic``: one per service and topic, so a
    rebalance of one subscription never pauses the others."""
    return f"{prefix}{group}.{topic}"
