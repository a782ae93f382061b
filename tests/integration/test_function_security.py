"""mTLS and access policies through the function runtime: the security app with Store and
Front behind activators (``--env functions``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.integration.harness import LumiRun, copy_app

pytestmark = pytest.mark.slow
APP = Path(__file__).parent / "apps" / "secure"
KEY = "k" * 16 + "-the-shared-secret-of-the-secure-app"


def token() -> str:
    now = int(time.time())
    return jwt.encode(
        {"sub": "ada", "aud": "secure", "exp": now + 300, "role": "buyer"}, KEY, algorithm="HS256"
    )


def instances(run: LumiRun, service: str) -> list[dict[str, Any]]:
    answer = run.http.get(f"{run.endpoint(service)}/instances")
    answer.raise_for_status()
    found: list[dict[str, Any]] = answer.json()["instances"]
    return found


def test_activators_guard_and_relay_the_caller(
    lumi_run: Callable[..., LumiRun], tmp_path: Path
) -> None:
    """A caller without a certificate, or one Store's policy refuses, is turned away by the
    activator without waking an instance; an admitted call reaches an instance over mTLS, which
    sees the caller the activator verified; a public call's token is verified by Front's
    instance and the user is seen two hops away."""
    app = copy_app(APP, tmp_path / "secure")
    run = lumi_run(app, "--no-dashboard", "--env", "functions", env={"SECURE_JWT_KEY": KEY})
    registry = run.wait_ready()
    assert registry["mtls"]
    assert {r["runtime"] for r in registry["services"]["Store"]["replicas"]} == {"function"}

    anonymous = httpx.post(f"{run.endpoint('Front')}/Front/private_hello", json={},
                           verify=False, timeout=10)  # fmt: skip
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "UNAUTHENTICATED"
    plain = httpx.post(f"{run.raw_endpoint('Store')}/Store/peek", json={}, timeout=10)
    assert plain.status_code == 401, plain.text  # plain HTTP to the activator's TLS port
    refused = run.post("Intruder", "try_put", {})
    assert refused.status_code == 403, refused.text
    assert instances(run, "Store") == [] and instances(run, "Front") == []

    peeked = run.post("Intruder", "try_peek", {})  # allowed by Store's policy for peek
    assert peeked.status_code == 200, peeked.text
    assert len(instances(run, "Store")) == 1

    missing = httpx.post(f"{run.endpoint('Front')}/Front/whoami", json={}, verify=False,
                         timeout=10)  # fmt: skip
    assert missing.status_code == 401 and "bearer token" in missing.json()["message"]
    seen = httpx.post(
        f"{run.endpoint('Front')}/Front/whoami",
        json={},
        headers={"authorization": f"Bearer {token()}"},
        verify=False,
        timeout=30,
    )
    assert seen.status_code == 200, seen.text
    assert [(s["service"], s["caller"], s["user"]) for s in seen.json()] == [
        ("Front", None, "ada"),
        ("Middle", "spiffe://secure/Front", "ada"),
        ("Store", "spiffe://secure/Middle", "ada"),
    ]
