"""Structured logs: call context on every line, stdlib capture, secrets redacted, renderers."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import lumi
from lumi.model.redact import REDACTED, redact
from lumi.runtime_services.observability.logs import configure_logging, reset_logging
from lumi.testing import wait_until
from tests.observekit import CHAIN, Gateway, Mailer, captured_logs


async def test_handler_lines_carry_service_method_and_ids() -> None:
    """Lines logged in handlers carry service, replica, method, correlation, trace and span ids."""
    with captured_logs(service="app", replica=3) as lines:
        async with lumi.App(CHAIN) as app:
            await app.client(Gateway).buy(sku="apple", password="hunter2")
            await wait_until(lambda: bool(app.service(Mailer).sent), message="mail sent")
        buying = lines.with_msg("buying")[0]
        reserving = lines.with_msg("reserving")[0]
        placing = lines.with_msg("placing an order")[0]
    assert buying["service"] == "Gateway" and buying["method"] == "buy"
    assert reserving["service"] == "Inventory" and reserving["method"] == "reserve"
    assert placing["service"] == "Orders" and placing["logger"] == "chain.std"
    assert {line["replica"] for line in (buying, reserving, placing)} == {3}
    ids = {line["correlation_id"] for line in (buying, reserving, placing)}
    assert len(ids) == 1 and len(ids.pop()) == 32
    assert len({line["trace_id"] for line in (buying, reserving, placing)}) == 1
    assert len({line["span_id"] for line in (buying, reserving, placing)}) == 3


async def test_event_handler_lines_name_the_event_and_keep_the_correlation() -> None:
    """A subscriber's lines carry the event topic and handler, and the publisher's correlation."""
    with captured_logs() as lines:
        async with lumi.App(CHAIN) as app:
            await app.client(Gateway).buy(sku="pear", password="x")
            await wait_until(lambda: bool(app.service(Mailer).sent), message="mail sent")
        mailing = lines.with_msg("mailing")[0]
        buying = lines.with_msg("buying")[0]
    assert mailing["event"] == "Orders.placed" and mailing["handler"] == "on_placed"
    assert mailing["service"] == "Mailer" and "method" not in mailing
    assert mailing["correlation_id"] == buying["correlation_id"]
    assert mailing["trace_id"] == buying["trace_id"]


async def test_secrets_and_sensitive_parameters_never_reach_the_log() -> None:
    """Secret keys and parameters marked lumi.Sensitive are masked, in structlog and stdlib."""
    with captured_logs() as lines:
        async with lumi.App(CHAIN) as app:
            await app.client(Gateway).buy(sku="apple", password="hunter2")
        text = lines.buffer.getvalue()
        placing = lines.with_msg("placing an order")[0]
        buying = lines.with_msg("buying")[0]
    assert "hunter2" not in text and "4111-1111" not in text
    assert buying["password"] == REDACTED and placing["card"] == REDACTED
    assert placing["sku"] == "apple"


def test_redact_masks_nested_secret_keys_and_bearer_tokens() -> None:
    """redact() masks secret keys at any depth and credentials inside text, copying only then."""
    value = {"user": "ada", "auth": {"api_key": "k", "list": [{"token": "t"}]}, "n": 1}
    masked = redact(value)
    assert masked == {
        "user": "ada",
        "auth": {"api_key": REDACTED, "list": [{"token": REDACTED}]},
        "n": 1,
    }
    assert value["auth"]["api_key"] == "k"  # the original is untouched
    assert redact("header Bearer abc.def") == f"header Bearer {REDACTED}"
    clean = {"a": [1, 2]}
    assert redact(clean) is clean
    assert redact({"card": "1"}, sensitive={"card"}) == {"card": REDACTED}


def test_stdlib_records_outside_calls_get_the_process_fields() -> None:
    """A library's stdlib record outside any call still gets ts, level, service and replica."""
    with captured_logs(service="Orders", replica=0) as lines:
        logging.getLogger("somelib").warning("disk %s", "low")
        line = lines.refresh()[0]
    assert line["msg"] == "disk low" and line["level"] == "warning"
    assert line["service"] == "Orders" and line["replica"] == 0 and line["ts"].endswith("Z")


def test_terminal_gets_readable_lines_and_the_file_json(tmp_path: Path) -> None:
    """A terminal gets human lines (no JSON) while the log file gets one JSON object a line."""
    stream = io.StringIO()
    log_file = tmp_path / "logs" / "Orders.log"
    try:
        configure_logging(
            service="Orders", log_file=log_file, stream=stream, json=False, colour=False
        )
        logging.getLogger("x").info("hello", extra={"sku": "a"})
    finally:
        reset_logging()
    line = stream.getvalue().strip()
    assert "hello" in line and "sku=a" in line and not line.startswith("{")
    stored = json.loads(log_file.read_text().splitlines()[0])
    assert stored["msg"] == "hello" and stored["sku"] == "a" and stored["service"] == "Orders"


def test_a_bad_level_is_one_clear_error() -> None:
    """An unknown level name is rejected with the valid names."""
    try:
        configure_logging(service="x", level="LOUD", stream=io.StringIO())
    except ValueError as exc:
        assert "LOUD" in str(exc) and "DEBUG" in str(exc)
    else:
        raise AssertionError("LOUD was accepted")


async def test_debug_argument_lines_are_redacted() -> None:
    """At DEBUG the dispatcher logs each call's arguments, with sensitive ones masked."""
    with captured_logs(level="DEBUG") as lines:
        async with lumi.App(CHAIN) as app:
            await app.client(Gateway).buy(sku="apple", password="hunter2")
        called = {line["method"]: line for line in lines.with_msg("Orders.place called")}
        text = lines.buffer.getvalue()
    assert called["place"]["arguments"] == {"sku": "apple", "card": REDACTED}
    assert "hunter2" not in text and "4111-1111" not in text
