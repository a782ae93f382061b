"""Config values of the Redis and SNS brokers: options, secrets from the environment, names,
and the error a missing client library gives."""

from __future__ import annotations

import importlib.abc
import sys
from pathlib import Path

import pytest

from lumi.brokers import broker_class, create_broker
from lumi.brokers._aws_names import queue_name, topic_name
from lumi.brokers._urls import expand_env, redact
from lumi.brokers.redis import RedisBroker
from lumi.brokers.sns import SnsBroker
from lumi.model.errors import ConfigError


def test_redis_options_in_the_url(tmp_path: Path) -> None:
    """Lumi's options are taken from the query; redis-py's stay in the URL it connects with."""
    broker = create_broker(
        "redis://cache:6380/2?maxlen=500&lease=10s&prefix=app:&socket_timeout=3", app_dir=tmp_path
    )
    assert isinstance(broker, RedisBroker)
    assert (broker.maxlen, broker.options.lease, broker.keys.prefix) == (500, 10.0, "app:")
    assert broker.url == "redis://cache:6380/2?socket_timeout=3"
    tls = create_broker("rediss://cache:6380/0?maxlen=0", app_dir=tmp_path)
    assert isinstance(tls, RedisBroker) and tls.maxlen == 0 and tls.url.startswith("rediss://")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://h?size=3", "unknown option\\(s\\) 'size' of the redis broker \\(Lumi's: maxlen"),
        ("redis://h?maxlen=lots", "the redis option maxlen must be a positive integer"),
        ("redis://h?lease=soon", "the redis option lease must be a duration such as 250ms"),
        ("sns://eu-west-1", "write the SNS broker as sns://\\?region=REGION"),
        ("sns://?region=x&colour=red", "unknown option 'colour' of the sns broker \\(valid: "),
        ("sns://?fifo=maybe", "the sns option fifo must be true or false, not 'maybe'"),
    ],
)
def test_bad_values_name_what_is_wrong(tmp_path: Path, url: str, message: str) -> None:
    """Each bad option is one ConfigError naming it and what would be valid."""
    with pytest.raises(ConfigError, match=message):
        create_broker(url, app_dir=tmp_path)


def test_sns_options_in_the_url(tmp_path: Path) -> None:
    """Region, endpoint, prefix, FIFO, archive, retention, lease and wait come from the query."""
    broker = create_broker(
        "sns://?region=eu-west-1&endpoint=http://127.0.0.1:5000&prefix=shop-&fifo=false"
        "&archive=false&retention=1d&lease=45s&wait=2s",
        app_dir=tmp_path,
    )
    assert isinstance(broker, SnsBroker)
    assert (broker.region, broker.endpoint, broker.prefix) == (
        "eu-west-1", "http://127.0.0.1:5000", "shop-",
    )  # fmt: skip
    assert (broker.fifo, broker.archive, broker.retention) == (False, False, 86400.0)
    assert (broker.queue_options.consumer.lease, broker.queue_options.wait) == (45.0, 2)


def test_password_comes_from_the_environment_and_is_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """${NAME} in the URL is filled from the environment (percent-encoded); what the broker
    shows is redacted; an unset variable is named, never a value."""
    monkeypatch.setenv("LUMI_TEST_PW", "s3cr@t/:x")
    broker = create_broker("redis://:${LUMI_TEST_PW}@cache:6379/0", app_dir=tmp_path)
    assert isinstance(broker, RedisBroker)
    assert broker.url == "redis://:s3cr%40t%2F%3Ax@cache:6379/0"
    assert "s3cr" not in repr(broker) and "s3cr" not in broker.safe_url
    assert broker.safe_url == "redis://:***@cache:6379/0"
    monkeypatch.delenv("LUMI_TEST_PW")
    with pytest.raises(ConfigError, match="uses \\$\\{LUMI_TEST_PW\\}, but .* is not set"):
        create_broker("redis://:${LUMI_TEST_PW}@cache:6379/0", app_dir=tmp_path)


def test_redact_hides_secret_query_values() -> None:
    """Query options that name a secret are masked; others stay readable."""
    url = "rediss://u:pw@h:1/0?ssl_password=abc&ssl_keyfile=/k.pem&socket_timeout=2"
    assert redact(url) == (
        "rediss://u:***@h:1/0?ssl_password=***&ssl_keyfile=/k.pem&socket_timeout=2"
    )
    assert expand_env("redis://h/${DB}", {"DB": "3"}) == "redis://h/3"


@pytest.mark.parametrize(("scheme", "package", "extra"), [("redis", "redis", "redis"),
                                                         ("sns", "aiobotocore", "sns")])  # fmt: skip
def test_missing_client_library_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, scheme: str, package: str, extra: str
) -> None:
    """Without its client library, choosing the broker is a ConfigError saying what to install."""
    for name in list(sys.modules):
        if name == package or name.startswith(package + "."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_Uninstalled(package), *sys.meta_path])
    monkeypatch.delitem(sys.modules, f"lumi.brokers.{scheme}", raising=False)
    with pytest.raises(ConfigError) as caught:
        broker_class(scheme)
    assert str(caught.value) == (
        f"events: the {scheme} event broker needs {package}: pip install 'lumi-runtime[{extra}]'"
    )


class _Uninstalled(importlib.abc.MetaPathFinder):
    """Finds ``package`` as Python does when it is not installed: not at all."""

    def __init__(self, package: str) -> None:
        self.package = package

    def find_spec(self, name: str, path: object, target: object = None) -> None:
        if name == self.package or name.startswith(self.package + "."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name.split(".")[0])
        return None


def test_aws_names_fit_and_never_collide() -> None:
    """Queue names stay within SQS's 80 characters (with .fifo), and topics whose readable
    names are the same still get different resources."""
    long = queue_name("lumi-", "Orders." + "x" * 200, "group", "Mailer-on_placed", fifo=True)
    assert len(long) == 80 and long.endswith(".fifo")
    assert topic_name("lumi-", "a.b", fifo=False) != topic_name("lumi-", "a-b", fifo=False)
    assert topic_name("lumi-", "Orders.placed", fifo=False).startswith("lumi-Orders-placed-")
