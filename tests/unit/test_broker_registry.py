"""create_broker: config values to brokers, with errors that say what would be right."""

from __future__ import annotations

from pathlib import Path

import pytest

from lumi.brokers import create_broker, scheme_of
from lumi.brokers.embedded import DAY, EmbeddedBroker
from lumi.brokers.memory import MemoryBroker
from lumi.config import load_config
from lumi.errors import ConfigError


def test_embedded_lives_in_the_app_folder(tmp_path: Path) -> None:
    """ "embedded" is the SQLite log at <app>/.lumi/events.db with a week of retention."""
    broker = create_broker("embedded", app_dir=tmp_path)
    assert isinstance(broker, EmbeddedBroker)
    assert broker.path == tmp_path / ".lumi" / "events.db"
    assert broker.retention == 7 * DAY and broker.max_events is None


def test_embedded_options_in_the_url(tmp_path: Path) -> None:
    """Retention, count limit and lease are set in the URL's query."""
    broker = create_broker("embedded?retention=12h&max_events=500&lease=90s", app_dir=tmp_path)
    assert isinstance(broker, EmbeddedBroker)
    assert (broker.retention, broker.max_events, broker.options.lease) == (43200.0, 500, 90.0)
    forever = create_broker("embedded?retention=forever", app_dir=tmp_path)
    assert isinstance(forever, EmbeddedBroker) and forever.retention is None


def test_memory_and_keyword_options(tmp_path: Path) -> None:
    """ "memory" is the in-process broker; keyword options reach the constructor."""
    broker = create_broker("memory", app_dir=tmp_path, concurrency=4)
    assert isinstance(broker, MemoryBroker) and broker.options.concurrency == 4


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("embeded", "unknown event broker 'embeded' .*did you mean 'embedded'"),
        ("rabbit://x", "unknown event broker 'rabbit' \\(valid: embedded, memory, kafka"),
        ("embedded?retention=soon", "retention must be a duration such as 30s, 15m, 12h or 7d"),
        ("embedded?max_events=-1", "max_events must be a positive integer"),
        ("embedded?size=3", "unknown option 'size' of the embedded broker"),
        ("memory?x=1", "the memory broker takes no options"),
    ],
)
def test_bad_values_name_what_is_wrong(tmp_path: Path, url: str, message: str) -> None:
    """Each bad value is one ConfigError naming the problem and what is valid."""
    with pytest.raises(ConfigError, match=message):
        create_broker(url, app_dir=tmp_path)


def test_scheme_of() -> None:
    """The scheme is what comes before :// or ?."""
    assert [scheme_of(u) for u in ("kafka://h:1", "embedded?lease=3", "memory")] == [
        "kafka",
        "embedded",
        "memory",
    ]


def test_config_accepts_embedded_options(tmp_path: Path) -> None:
    """lumi.toml may carry options in the events value."""
    (tmp_path / "lumi.toml").write_text(
        '[app]\nname = "a"\nservices = ["m:S"]\n[defaults]\nevents = "embedded?retention=3d"\n'
    )
    assert load_config(tmp_path).defaults.events == "embedded?retention=3d"
