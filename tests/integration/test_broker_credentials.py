"""Broker credentials come from the environment: a NATS server that requires a password
accepts the one read from a variable, and a wrong one is a clear error that does not show it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lumi.brokers import create_broker
from lumi.brokers.base import Delivery
from lumi.model.errors import ConfigError
from lumi.testing import wait_until
from tests.conformance.broker_contract import envelope
from tests.engines.nats import NatsServer

pytestmark = pytest.mark.slow


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[NatsServer]:
    """nats-server with JetStream that lets in only user "app" with password "s3cret-pw"."""
    server = NatsServer(tmp_path, extra=["--user", "app", "--pass", "s3cret-pw"])
    server.start()
    yield server
    server.stop()


async def test_password_from_the_environment(
    guarded: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """password=${VAR} is read from the environment and the events flow."""
    monkeypatch.setenv("NATS_TEST_PASSWORD", "s3cret-pw")
    url = guarded.url("user=app&password=${NATS_TEST_PASSWORD}")
    got: list[str] = []

    async def keep(delivery: Delivery) -> None:
        got.append(delivery.envelope.id)

    async with create_broker(url, app_dir=tmp_path) as broker:
        await broker.subscribe("Svc.done", "G", keep)
        await broker.publish("Svc.done", [sent := envelope("Svc.done", {"ok": True})])
        await wait_until(lambda: got == [sent.id], timeout=15, message="the event")


async def test_wrong_password_is_one_clear_error(
    guarded: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused password is a ConfigError naming the server and what to check, not the value."""
    monkeypatch.setenv("NATS_TEST_PASSWORD", "not-the-password")
    broker = create_broker(guarded.url("user=app&password=${NATS_TEST_PASSWORD}"), app_dir=tmp_path)
    with pytest.raises(ConfigError, match="refused the credentials") as caught:
        await broker.start()
    assert "not-the-password" not in str(caught.value)
    assert f"127.0.0.1:{guarded.port}" in str(caught.value)
