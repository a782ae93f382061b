"""Kafka and NATS ``events`` URLs: options, secrets from the environment, missing extras."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from lumi.backends import BROKERS, Backend
from lumi.brokers import create_broker
from lumi.brokers.kafka import KafkaBroker
from lumi.brokers.nats import NatsBroker
from lumi.model.errors import ConfigError


def test_kafka_url_splits_lumi_and_librdkafka_options(tmp_path: Path) -> None:
    """Lumi's options set the broker; dotted names (and acks) go to librdkafka by role."""
    broker = create_broker(
        "kafka://a:9092,b:9093?partitions=6&mode=binary&acks=1&linger.ms=20"
        "&session.timeout.ms=6000&prefix=shop.",
        app_dir=tmp_path,
    )
    assert isinstance(broker, KafkaBroker)
    assert (broker.servers, broker.partitions, broker.mode, broker.prefix) == (
        "a:9092,b:9093", 6, "binary", "shop.",
    )  # fmt: skip
    consumer = broker.consumer_config
    assert consumer["session.timeout.ms"] == "6000" and "acks" not in consumer
    assert "linger.ms" not in consumer and consumer["bootstrap.servers"] == "a:9092,b:9093"
    assert broker.group_id("Mailer", "Orders.placed") == "shop.Mailer.Orders.placed"


def test_kafka_secret_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sasl.password=${VAR} reads VAR; the value is in the client config, not in the URL."""
    monkeypatch.setenv("KAFKA_PW", "s3cret-value")
    url = "kafka://h:9092?security.protocol=SASL_PLAINTEXT&sasl.mechanism=PLAIN&sasl.username=u&sasl.password=${KAFKA_PW}"
    broker = create_broker(url, app_dir=tmp_path)
    assert isinstance(broker, KafkaBroker)
    assert broker.consumer_config["sasl.password"] == "s3cret-value"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "kafka://h:9092?sasl.password=hunter2",
            "option 'sasl.password' is a secret, so it is read from the environment",
        ),
        (
            "kafka://h:9092?sasl.password=${NOT_SET_ANYWHERE}",
            "needs the environment variable NOT_SET_ANYWHERE",
        ),
        ("kafka://h:9092?partitions=0", "partitions is an integer of at least 1"),
        ("kafka://h:9092?mode=json", "mode is one of"),
        ("kafka://h:9092?group.id=x", "'group.id' is set by Lumi"),
        (
            "kafka://h:9092?partitons=3",
            "unknown kafka option 'partitons'.*did you mean 'partitions'",
        ),
        ("kafka://", "names no host"),
        ("kafka://u:p@h:9092", "credentials in options read from the environment"),
        ("nats://h:4222?token=abc", "'token' is a secret"),
        ("nats://h:4222?lease=soon", "lease is a duration such as"),
        ("nats://h:4222?storage=disk", "storage is file or memory"),
        ("nats://h:4222?strem=X", "unknown nats option 'strem'.*did you mean 'stream'"),
    ],
)
def test_bad_options_name_what_is_wrong(tmp_path: Path, url: str, message: str) -> None:
    """Each mistake is one ConfigError saying what is wrong (never echoing a secret)."""
    with pytest.raises(ConfigError, match=message) as caught:
        create_broker(url, app_dir=tmp_path)
    assert "hunter2" not in str(caught.value) and "abc" not in str(caught.value)


def test_invalid_librdkafka_property_fails_at_start(tmp_path: Path) -> None:
    """A property librdkafka does not know is a ConfigError when the broker starts."""
    broker = create_broker("kafka://127.0.0.1:1?no.such.property=1", app_dir=tmp_path)
    with pytest.raises(ConfigError, match='No such configuration property: "no.such.property"'):
        asyncio.run(broker.start())


def test_nats_url_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stream, prefix, lease and credentials reach the broker and its connect options."""
    monkeypatch.setenv("NATS_PW", "pw")
    broker = create_broker(
        "nats://a:4222,b:4223?stream=SHOP&prefix=shop&lease=45s&user=app&password=${NATS_PW}",
        app_dir=tmp_path,
    )
    assert isinstance(broker, NatsBroker)
    assert broker.servers == ["nats://a:4222", "nats://b:4223"]
    assert (broker.stream, broker.prefix, broker.lease) == ("SHOP", "shop", 45.0)
    assert broker._connect == {"user": "app", "password": "pw"}


@pytest.mark.parametrize(
    ("scheme", "module", "extra"),
    [("kafka", "confluent_kafka", "kafka"), ("nats", "nats", "nats")],
)
def test_missing_client_library_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheme: str, module: str, extra: str
) -> None:
    """Without the client library, the broker's scheme says which extra to install."""
    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")] or [module]:
        monkeypatch.setitem(sys.modules, name, None)  # makes importing it (or a part) fail
    monkeypatch.delitem(sys.modules, BROKERS.builtins[scheme].module, raising=False)
    with pytest.raises(ConfigError, match=rf"pip install 'lumi-runtime\[{extra}\]'"):
        create_broker(f"{scheme}://127.0.0.1:1", app_dir=tmp_path)


def test_backend_module_missing_says_not_available(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registered scheme whose module is not in this Lumi is reported as not available."""
    missing = Backend("kafka", "lumi.brokers.no_such_module:X", "kafka")
    monkeypatch.setitem(BROKERS.builtins, "kafka", missing)
    with pytest.raises(
        ConfigError, match="the kafka event broker is not available in this version"
    ):
        create_broker("kafka://h:1", app_dir=tmp_path)


@pytest.mark.parametrize("doc", ["README.md", "docs/events.md"])
def test_documented_urls_are_valid(
    doc: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every kafka:// and nats:// events value in the docs' TOML snippets creates a broker."""
    import re

    monkeypatch.setenv("KAFKA_PASSWORD", "x")
    monkeypatch.setenv("NATS_PASSWORD", "x")
    text = (Path(__file__).parents[2] / doc).read_text()
    urls = re.findall(r'^#? ?events = "((?:kafka|nats)://[^"]+)"', text, flags=re.M)
    assert urls, f"no broker URLs found in {doc}"
    for url in urls:
        assert create_broker(url, app_dir=tmp_path).name in ("kafka", "nats")
