"""lumi.Jwt: shared keys from the environment, JWKS from a real HTTP server (with rotation),
and failures that name the problem without the token or the key."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import lumi

SECRET = "s" * 64


class KeySet:
    """A JWKS served over HTTP on 127.0.0.1 (a ThreadingHTTPServer), counting fetches."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.fetches = 0
        keyset = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                keyset.fetches += 1
                body = json.dumps({"keys": keyset.keys}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"

    def add(self, kid: str, key: Any, alg: str) -> None:
        algorithm = jwt.get_algorithm_by_name(alg)
        jwk = json.loads(algorithm.to_jwk(key.public_key()))
        self.keys.append({**jwk, "kid": kid, "alg": alg, "use": "sig"})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def keyset() -> Iterator[KeySet]:
    served = KeySet()
    try:
        yield served
    finally:
        served.close()


def claims(**extra: Any) -> dict[str, Any]:
    return {
        "sub": "ada",
        "aud": "shop",
        "iss": "https://id.example",
        "exp": int(time.time()) + 60,
        **extra,
    }


async def test_a_shared_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """HS256 with the key in an environment variable read when first needed: a good token gives
    its claims; a missing variable is INTERNAL naming it (not any value)."""
    verify = lumi.Jwt(key_env="TEST_JWT_KEY", audience="shop")
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    with pytest.raises(lumi.Internal, match="TEST_JWT_KEY is not set"):
        await verify(token)
    monkeypatch.setenv("TEST_JWT_KEY", SECRET)
    assert (await verify(token))["sub"] == "ada"
    assert SECRET not in repr(verify)


async def test_jwks_tokens_verify_and_a_rotated_key_is_fetched(keyset: KeySet) -> None:
    """RS256 and ES256 tokens verify against the served key set, which is fetched once and
    cached; a token naming a new key id makes it fetch again (the issuer rotated its keys)."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    keyset.add("r1", rsa_key, "RS256")
    keyset.add("e1", ec_key, "ES256")
    verify = lumi.Jwt(
        jwks_url=keyset.url, audience="shop", issuer="https://id.example", min_refresh=0
    )
    for kid, key, alg in (("r1", rsa_key, "RS256"), ("e1", ec_key, "ES256")):
        token = jwt.encode(claims(), key, algorithm=alg, headers={"kid": kid})
        assert (await verify(token))["sub"] == "ada"
    assert keyset.fetches == 1
    rotated = ec.generate_private_key(ec.SECP256R1())
    keyset.add("e2", rotated, "ES256")
    token = jwt.encode(claims(), rotated, algorithm="ES256", headers={"kid": "e2"})
    assert (await verify(token))["sub"] == "ada"
    assert keyset.fetches == 2
    stranger = jwt.encode(claims(), ec.generate_private_key(ec.SECP256R1()), algorithm="ES256",
                          headers={"kid": "zz"})  # fmt: skip
    with pytest.raises(lumi.Unauthenticated, match="key 'zz' is not in the issuer's key set"):
        await verify(stranger)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"exp": int(time.time()) - 5}, "has expired"),
        ({"nbf": int(time.time()) + 3600}, "not valid yet"),
        ({"aud": "elsewhere"}, "another audience"),
        ({"iss": "https://evil.example"}, "another issuer"),
    ],
    ids=["expired", "not-yet", "audience", "issuer"],
)
async def test_claims_that_do_not_hold_are_unauthenticated(
    changes: dict[str, Any], message: str
) -> None:
    """exp, nbf, aud and iss are checked, each failure named; the token is never repeated."""
    verify = lumi.Jwt(key=SECRET, audience="shop", issuer="https://id.example")
    token = jwt.encode(claims(**changes), SECRET, algorithm="HS256")
    with pytest.raises(lumi.Unauthenticated, match=message) as caught:
        await verify(token)
    assert token not in caught.value.message


async def test_forged_and_unsigned_tokens_are_refused() -> None:
    """A token signed with another key, one claiming alg none, one with a disallowed algorithm,
    one missing sub, and garbage: each UNAUTHENTICATED; a verifier allowing none cannot be made."""
    verify = lumi.Jwt(key=SECRET, audience="shop")
    cases = {
        jwt.encode(claims(), "x" * 64, algorithm="HS256"): "does not verify",
        jwt.encode(claims(), None, algorithm="none"): "signed with 'none'",
        jwt.encode(claims(), SECRET, algorithm="HS512"): "signed with .HS512.",
        jwt.encode(
            {k: v for k, v in claims().items() if k != "sub"}, SECRET, algorithm="HS256"
        ): "no 'sub' claim",
        "a.b": "not a JWT",
    }
    for token, message in cases.items():
        with pytest.raises(lumi.Unauthenticated, match=message):
            await lumi.Jwt(key=SECRET, audience="shop", algorithms=["HS256"]).verify(token)
    assert (await verify(jwt.encode(claims(), SECRET, algorithm="HS512")))["sub"] == "ada"
    with pytest.raises(lumi.ConfigError, match="never accepted"):
        lumi.Jwt(key=SECRET, algorithms=["none"])
    with pytest.raises(lumi.ConfigError, match="exactly one of"):
        lumi.Jwt(key=SECRET, key_env="X")
