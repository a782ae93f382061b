"""The AsyncAPI document describes the configured broker: servers, channel, operation and
message bindings for Kafka, NATS, Redis and SNS, accepted by the official @asyncapi/parser."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lumi.brokers.asyncapi import describe
from lumi.codegen.asyncapi import document
from lumi.config import load_config
from lumi.model.interface import interface
from tests.conftest import SHOP
from tests.interop import tools

SHOP_INTERFACES = sorted(
    (interface(cls) for cls in load_config(SHOP).load_services()), key=lambda i: i.name
)


def generated(events: str) -> dict[str, Any]:
    """The shop's AsyncAPI document with every service's events on ``events``."""
    view = describe(events)
    brokers = {} if view is None else {i.name: view for i in SHOP_INTERFACES}
    return document(SHOP_INTERFACES, "shop", brokers=brokers)


def validate(doc: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "asyncapi.json"
    path.write_text(json.dumps(doc))
    tools.asyncapi([path])


def test_kafka_topics_groups_and_keys(tmp_path: Path) -> None:
    """On Kafka: a server, the prefixed topic with its partitions, the consumer group of each
    receiving service and the record key; no secret from the URL appears."""
    doc = generated(
        "kafka://k1:9092,k2:9092?prefix=shop.&partitions=6&security.protocol=SASL_SSL"
        "&sasl.password=${KAFKA_PASSWORD}"
    )
    validate(doc, tmp_path)
    assert doc["servers"] == {
        "kafka": {"host": "k1:9092", "protocol": "kafka-secure", "description": "Also: k2:9092"}
    }
    channel = doc["channels"]["Orders.placed"]
    assert channel["address"] == "shop.Orders.placed"
    assert channel["servers"] == [{"$ref": "#/servers/kafka"}]
    assert channel["bindings"]["kafka"]["partitions"] == 6
    group = doc["operations"]["Mailer.on_placed"]["bindings"]["kafka"]["groupId"]
    assert group["enum"] == ["shop.Mailer.Orders.placed"]
    assert doc["components"]["messages"]["OrdersPlaced"]["bindings"]["kafka"]["key"]
    assert "KAFKA_PASSWORD" not in json.dumps(doc) and "sasl" not in json.dumps(doc)


def test_kafka_binary_mode_puts_attributes_in_headers(tmp_path: Path) -> None:
    """With mode=binary the message payload is the event's data and the CloudEvents
    attributes are ce_ headers."""
    doc = generated("kafka://k1:9092?mode=binary")
    validate(doc, tmp_path)
    message = doc["components"]["messages"]["OrdersPlaced"]
    assert message["contentType"] == "application/json"
    assert message["payload"] == {"$ref": "#/components/schemas/Orders.OrderPlaced"}
    assert {"ce_id", "ce_source", "ce_type", "ce_specversion"} <= set(
        message["headers"]["required"]
    )


def test_nats_subjects_and_consumers(tmp_path: Path) -> None:
    """On NATS: the subject under the prefix, and the durable consumer of each group."""
    doc = generated("nats://n1:4222?prefix=shop&stream=SHOP")
    validate(doc, tmp_path)
    assert doc["servers"]["nats"] == {"host": "n1:4222", "protocol": "nats"}
    assert doc["channels"]["Orders.placed"]["address"] == "shop.Orders.placed"
    queue = doc["operations"]["Mailer.on_placed"]["bindings"]["nats"]["queue"]
    assert queue.startswith("Mailer_Orders_placed_")


@pytest.mark.parametrize(
    ("url", "server"),
    [
        ("redis://r1:6379", {"host": "r1:6379", "protocol": "redis"}),
        ("sns://?region=eu-west-1", {"host": "sns.eu-west-1.amazonaws.com", "protocol": "sns"}),
    ],
)
def test_redis_and_sns_servers(tmp_path: Path, url: str, server: dict[str, str]) -> None:
    """Redis and SNS brokers appear as servers (SNS channels name their topic)."""
    doc = generated(url)
    validate(doc, tmp_path)
    assert next(iter(doc["servers"].values())) == server


def test_embedded_adds_no_server() -> None:
    """The embedded log is Lumi's own: the document has no servers, as before."""
    assert "servers" not in generated("embedded")


def test_lumi_gen_reads_the_environment(tmp_path: Path) -> None:
    """lumi gen asyncapi --env NAME describes that environment's broker."""
    app = tmp_path / "shop"
    subprocess.run(["cp", "-r", str(SHOP), str(app)], check=True)
    config = app / "lumi.toml"
    config.write_text(config.read_text() + '\n[env.prod.defaults]\nevents = "nats://n1:4222"\n')
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "lumi.cli.main", "gen", "asyncapi", "--app", str(app), "--env",
         "prod", "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    doc = json.loads((out / "asyncapi.json").read_text())
    assert doc["servers"]["nats"]["host"] == "n1:4222"
    assert doc["channels"]["Orders.placed"]["address"] == "lumi.Orders.placed"
