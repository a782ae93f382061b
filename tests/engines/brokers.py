"""``network_broker``: one test, run once per network broker, each on its real engine.

A param is a broker name; :data:`URLS` maps it to a function of (request, namespace) giving an
``events`` URL on that broker's session engine, in a namespace of the test's own. Adding a
broker to these tests is a line here (and its engine module in ``tests/engines/``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest


def _kafka(request: pytest.FixtureRequest, name: str) -> str:
    return str(request.getfixturevalue("kafka_engine").url(f"prefix={name}."))


def _nats(request: pytest.FixtureRequest, name: str) -> str:
    return str(request.getfixturevalue("nats_engine").url(f"stream={name.upper()}&prefix={name}"))


URLS: dict[str, Callable[[pytest.FixtureRequest, str], str]] = {"kafka": _kafka, "nats": _nats}


@pytest.fixture(params=sorted(URLS))
def network_broker(request: pytest.FixtureRequest) -> str:
    """An ``events`` URL on a real broker (each in turn), in a namespace of this test's own."""
    return URLS[request.param](request, f"t{uuid.uuid4().hex[:10]}")


def with_environment(app: Path, name: str, events: str) -> None:
    """Add ``[env.NAME.defaults] events = ...`` to the app's lumi.toml (no code changes)."""
    config = app / "lumi.toml"
    config.write_text(config.read_text() + f'\n[env.{name}.defaults]\nevents = "{events}"\n')
