"""``lumi build lambda`` zips run under the official awslambdaric runtime client against a
Lambda Runtime API server, with API Gateway (v1, v2), Function URL, SQS and SNS payloads."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lumi.model.envelope import Envelope, now_rfc3339
from tests.conftest import SHOP
from tests.integration import lambda_events as events
from tests.integration.harness import copy_app
from tests.lambda_api import LambdaFunction, RuntimeApi

pytestmark = pytest.mark.slow
PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"  # the runtime client runs here


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    app = copy_app(SHOP, tmp_path_factory.mktemp("lambda") / "shop")
    # No service identity reaches an invocation: with mTLS on only public methods would be
    # served (tests/integration/test_lambda_security.py); here IAM is the only gate.
    with (app / "lumi.toml").open("a") as config:
        config.write("\n[security]\nmtls = false\n")
    return app


def build(shop: Path, service: str) -> Path:
    done = subprocess.run(
        [sys.executable, "-m", "lumi.cli.main", "build", "lambda", service, "--app", str(shop),
         "--python", PYTHON],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "handler lumi_lambda.handler" in done.stdout
    return shop / ".lumi" / "lambda" / f"{service}.zip"


def running(zip_path: Path, folder: Path) -> Iterator[LambdaFunction]:
    api = RuntimeApi()
    function = LambdaFunction(zip_path, folder, api)
    try:
        yield function
    finally:
        function.stop()
        api.close()


@pytest.fixture(scope="module")
def catalog(shop: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LambdaFunction]:
    yield from running(build(shop, "Catalog"), tmp_path_factory.mktemp("fn") / "catalog")


@pytest.fixture(scope="module")
def mailer(shop: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LambdaFunction]:
    yield from running(build(shop, "Mailer"), tmp_path_factory.mktemp("fn") / "mailer")


def answer(function: LambdaFunction, event: dict[str, Any]) -> dict[str, Any]:
    outcome, body = function.invoke(event)
    assert outcome == "response", (body, function.output())
    assert isinstance(body, dict)
    return body


def placed(customer: str, order_id: str, *, total: Any = 100) -> str:
    data = {"order_id": order_id, "customer": customer, "total_cents": total}
    envelope = Envelope(
        id=uuid.uuid4().hex, source="/lumi/shop/Orders", type="Orders.placed",
        data=json.dumps(data).encode(), time=now_rfc3339(), correlationid=f"corr-{order_id}",
    )  # fmt: skip
    return envelope.to_json().decode()


def test_the_zip_is_reproducible(shop: Path, catalog: LambdaFunction) -> None:
    """Building the same service again gives the same bytes; the handler is at the root."""
    first = (shop / ".lumi" / "lambda" / "Catalog.zip").read_bytes()
    again = build(shop, "Catalog").read_bytes()
    assert first == again
    with zipfile.ZipFile(shop / ".lumi" / "lambda" / "Catalog.zip") as archive:
        names = set(archive.namelist())
    assert {
        "lumi_lambda.py",
        "app/lumi.toml",
        "app/shop/catalog.py",
        "lumi/runtimes/aws_lambda.py",
    } <= names
    assert any(n.startswith("pydantic_core/") for n in names)


def test_http_api_v2(catalog: LambdaFunction) -> None:
    """An HTTP API (payload 2.0) call gets the JSON result; its correlation id comes back."""
    event = events.http_v2(
        "/Catalog/product", {"sku": "pear"}, headers={"x-correlation-id": "c-v2"}
    )
    body = answer(catalog, event)
    assert body["statusCode"] == 200
    assert json.loads(body["body"]) == {"sku": "pear", "name": "Pear", "price_cents": 75}
    assert body["headers"]["x-correlation-id"] == "c-v2"


def test_logs_are_json_lines_with_the_correlation_id(catalog: LambdaFunction) -> None:
    """A failed call's access log is one JSON line on stdout carrying its correlation id."""
    event = events.http_v2(
        "/Catalog/product", {"sku": "fig"}, headers={"x-correlation-id": "c-log"}
    )
    assert answer(catalog, event)["statusCode"] == 404
    lines = [line for line in catalog.output().splitlines() if "c-log" in line]
    assert len(lines) == 1, catalog.output()
    record = json.loads(lines[0])
    assert record["correlation_id"] == "c-log" and record["code"] == "NOT_FOUND"


def test_rest_api_v1_with_a_stage(catalog: LambdaFunction) -> None:
    """A REST API proxy (payload 1.0) call on a stage is served the same way."""
    body = answer(catalog, events.rest_v1("/Catalog/products", {}, stage="prod"))
    assert body["statusCode"] == 200
    assert [p["sku"] for p in json.loads(body["body"])] == ["apple", "melon", "pear"]


def test_function_url_with_a_base64_body(catalog: LambdaFunction) -> None:
    """A Function URL call (payload 2.0, base64 body) works; without a correlation id the
    request id becomes the correlation id."""
    event = events.function_url("/Catalog/product", {"sku": "apple"})
    event["body"], event["isBase64Encoded"] = base64.b64encode(b'{"sku":"apple"}').decode(), True
    body = answer(catalog, event)
    assert body["statusCode"] == 200 and json.loads(body["body"])["sku"] == "apple"
    assert body["headers"]["x-correlation-id"] == event["requestContext"]["requestId"]


@pytest.mark.parametrize(
    ("event", "status", "code"),
    [
        (
            events.http_v2("/Catalog/product", {"sku": "kiwi"}),
            404,
            "NOT_FOUND",
        ),  # raised by the handler
        (events.http_v2("/Catalog/product", {"sku": 5}), 400, "INVALID_ARGUMENT"),
        (events.http_v2("/Catalog/product", {"sku": "a", "x": 1}), 400, "INVALID_ARGUMENT"),
        (events.rest_v1("/Catalog/nope", {}), 404, "NOT_FOUND"),
        (events.http_v2("/Catalog/product", None, method="PUT"), 400, "INVALID_ARGUMENT"),
    ],
)
def test_errors_get_their_status(
    catalog: LambdaFunction, event: dict[str, Any], status: int, code: str
) -> None:
    """A handler error or bad input is the error body with its code's HTTP status."""
    body = answer(catalog, event)
    assert body["statusCode"] == status, body
    error = json.loads(body["body"])
    assert error["code"] == code and error["message"]
    assert "Traceback" not in body["body"]


def test_bad_json_is_invalid_argument(catalog: LambdaFunction) -> None:
    """A body that is not JSON is INVALID_ARGUMENT, and the function keeps serving."""
    event = events.http_v2("/Catalog/product")
    event["body"] = '{"sku": '
    assert answer(catalog, event)["statusCode"] == 400
    assert answer(catalog, events.http_v2("/Catalog/product", {"sku": "pear"}))["statusCode"] == 200


def test_get_interface_and_readiness(catalog: LambdaFunction) -> None:
    """GET .../interface and .../readyz answer without a method call."""
    iface = answer(catalog, events.http_v2("/Catalog/interface", method="GET"))
    assert "product" in json.loads(iface["body"])["Catalog"]["methods"]
    assert answer(catalog, events.rest_v1("/readyz", method="GET"))["statusCode"] == 200


def test_sqs_batch_reports_only_failed_records(mailer: LambdaFunction) -> None:
    """In an SQS batch, a record whose handler fails (a payload that does not validate) is the
    only batch item failure; the others are delivered, raw or wrapped in an SNS notification."""
    good = placed("grace", "o-1")
    wrapped = json.dumps(events.sns_notification(placed("grace", "o-2")))
    bad = placed("grace", "o-3", total="lots")
    event = events.sqs([good, bad, wrapped])
    body = answer(mailer, event)
    assert body == {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["messageId"]}]}
    sent = answer(mailer, events.http_v2("/Mailer/sent", {"customer": "grace"}))
    assert json.loads(sent["body"]) == [
        "Dear grace, order o-1 is confirmed.",
        "Dear grace, order o-2 is confirmed.",
    ]
    assert "corr-o-1" in mailer.output()  # the event's correlation id is in its logs


def test_sqs_record_that_is_not_an_event_fails_alone(mailer: LambdaFunction) -> None:
    """A record whose body is not a CloudEvents envelope is a batch item failure."""
    event = events.sqs(["not json", placed("hopper", "o-4")])
    body = answer(mailer, event)
    assert body == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}


def test_sns_delivers_and_a_failure_fails_the_invocation(mailer: LambdaFunction) -> None:
    """An SNS event is delivered; one whose handler fails is an invocation error (so Lambda's
    asynchronous retry takes over)."""
    assert mailer.invoke(events.sns(placed("ada", "o-5"))) == ("response", None)
    sent = answer(mailer, events.http_v2("/Mailer/sent", {"customer": "ada"}))
    assert json.loads(sent["body"]) == ["Dear ada, order o-5 is confirmed."]
    outcome, error = mailer.invoke(events.sns(placed("ada", "o-6", total=[1])))
    assert outcome == "error"
    assert error["errorType"] == "Reject" and "total_cents" in error["errorMessage"]


def test_an_unknown_payload_is_an_invocation_error(catalog: LambdaFunction) -> None:
    """A payload of no known kind fails the invocation with a message naming the kinds."""
    outcome, error = catalog.invoke({"hello": "world"})
    assert outcome == "error"
    assert error["errorType"] == "InvalidArgument" and "SQS or SNS" in error["errorMessage"]
