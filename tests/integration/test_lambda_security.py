"""The access guard in a Lambda function: the security app's Front packaged by ``lumi build
lambda``, under awslambdaric, calling Middle and Store of a real ``lumi run`` over mTLS with a
certificate of that run's CA."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from lumi.security import identity
from lumi.security.bundle import write_bundle
from lumi.security.ca import CertificateAuthority
from lumi.transports.tls import CA_FILE, CERT_FILE, KEY_FILE
from tests.integration import lambda_events as events
from tests.integration.harness import LumiRun, copy_app
from tests.lambda_api import LambdaFunction, RuntimeApi

pytestmark = pytest.mark.slow
APP = Path(__file__).parent / "apps" / "secure"
KEY = "k" * 16 + "-the-shared-secret-of-the-secure-app"
PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"


def token(key: str = KEY) -> str:
    now = int(time.time())
    return jwt.encode(
        {"sub": "ada", "aud": "secure", "exp": now + 300, "role": "buyer"}, key, algorithm="HS256"
    )


@pytest.fixture
def front(
    lumi_run: Callable[..., LumiRun], tmp_path: Path
) -> Iterator[tuple[LambdaFunction, LumiRun]]:
    app = copy_app(APP, tmp_path / "secure")
    run = lumi_run(app, "--no-dashboard", env={"SECURE_JWT_KEY": KEY})
    run.wait_ready()
    built = subprocess.run(
        [sys.executable, "-m", "lumi.cli.main", "build", "lambda", "Front", "--app", str(app),
         "--python", PYTHON],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    # Front's certificate from the run's CA, as a deployment would put it in $LUMI_TLS_DIR.
    ca = CertificateAuthority.load(app / ".lumi" / "ca")
    issued = ca.issue(identity.service_id("secure", "Front"), lifetime=600)
    bundle = write_bundle(
        tmp_path / "front-tls",
        {CERT_FILE: issued.cert, KEY_FILE: issued.key, CA_FILE: ca.cert_pem},
    ).parent
    api = RuntimeApi()
    function = LambdaFunction(
        app / ".lumi" / "lambda" / "Front.zip",
        tmp_path / "fn",
        api,
        env={
            "SECURE_JWT_KEY": KEY,
            "LUMI_TLS_DIR": str(bundle),
            "LUMI_ENDPOINTS_MIDDLE": run.raw_endpoint("Middle"),
        },
    )
    try:
        yield function, run
    finally:
        function.stop()
        api.close()


def call(function: LambdaFunction, method: str, headers: dict[str, str]) -> tuple[int, Any]:
    outcome, body = function.invoke(events.http_v2(f"/Front/{method}", {}, headers=headers))
    assert outcome == "response", (body, function.output())
    return body["statusCode"], json.loads(body["body"])


def test_the_guard_runs_in_lambda(front: tuple[LambdaFunction, LumiRun]) -> None:
    """No service identity reaches a Lambda invocation: a private method is UNAUTHENTICATED
    (a claimed x-lumi-caller changes nothing), a public one needs a valid token, and with one
    the user follows the call over mTLS to Store, two hops away, which sees Middle calling."""
    function, _ = front
    claimed = {"x-lumi-caller": "spiffe://secure/Middle"}
    status, body = call(function, "private_hello", claimed)
    assert status == 401 and body["code"] == "UNAUTHENTICATED", body
    status, body = call(function, "whoami", claimed)
    assert status == 401 and "bearer token" in body["message"], body
    status, body = call(function, "whoami", {"authorization": f"Bearer {token('x' * 40)}"})
    assert status == 401 and body["code"] == "UNAUTHENTICATED", body
    status, body = call(function, "whoami", {"authorization": f"Bearer {token()}"})
    assert status == 200, body
    assert [(s["service"], s["caller"], s["user"]) for s in body] == [
        ("Front", None, "ada"),
        ("Middle", "spiffe://secure/Front", "ada"),
        ("Store", "spiffe://secure/Middle", "ada"),
    ]
    assert token() not in function.output() and KEY not in function.output()
