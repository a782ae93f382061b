"""Who may call what, against a real ``lumi run`` of the security app (apps/secure).

Store admits Middle (and Intruder for ``peek``); Front has public methods and an ``@lumi.auth``
handler verifying HS256 tokens. Clients Lumi did not write (curl) speak the mTLS; refused
calls are checked never to have reached a handler (Store keeps a history the operator reads).
"""

from __future__ import annotations

import datetime
import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

import lumi
from lumi.model.context import Metadata
from lumi.pipeline.call import Call
from lumi.security import identity
from lumi.security.ca import CertificateAuthority
from lumi.transports.base import ChannelSettings
from lumi.transports.http import HttpTransport
from lumi.transports.tls import Tls, TlsFiles
from tests.integration.harness import LumiRun, alive, copy_app, wait
from tests.tlskit import TlsKit

APP = Path(__file__).parent / "apps" / "secure"
KEY = "k" * 16 + "-the-shared-secret-of-the-secure-app"
JSON = "content-type: application/json"
LIFETIME = 6.0  # security.cert_lifetime in apps/secure/lumi.toml


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LumiRun]:
    """The security app under ``lumi run`` (mTLS on, the default), stopped at the end."""
    app = copy_app(APP, tmp_path_factory.mktemp("secure") / "secure")
    run = LumiRun(app, "--no-dashboard", env={"SECURE_JWT_KEY": KEY})
    try:
        run.wait_ready()
        yield run
    finally:
        pids = run.pids()
        run.stop()
        wait(lambda: not any(alive(p) for p in pids), timeout=30, message="no orphans")


def token(key: str = KEY, **claims: Any) -> str:
    """An HS256 token for the user ada (claims override the defaults)."""
    now = int(time.time())
    body = {"sub": "ada", "aud": "secure", "exp": now + 300, "role": "buyer", **claims}
    return jwt.encode(body, key, algorithm="HS256")


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "-m", "15", "-w", "\n%{http_code}", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def answer(result: subprocess.CompletedProcess[str]) -> tuple[int, Any]:
    """(HTTP status, JSON body) of a ``curl`` run."""
    body, _, status = result.stdout.rpartition("\n")
    return int(status), json.loads(body) if body else None


def url(run: LumiRun, service: str, method: str) -> str:
    return f"{run.endpoint(service)}/{service}/{method}"


def operator(run: LumiRun) -> list[str]:
    folder = run.operator()
    return ["--cert", f"{folder}/tls.crt", "--key", f"{folder}/tls.key", *trust(run)]


def trust(run: LumiRun) -> list[str]:
    return ["--cacert", str(run.operator() / "ca.crt")]


def history(run: LumiRun) -> list[str]:
    response = run.post("Store", "history", {})
    assert response.status_code == 200, response.text
    return list(response.json())


def identity_files(run: LumiRun, tmp_path: Path, service: str, **kwargs: Any) -> list[str]:
    """curl arguments presenting a certificate for ``service`` issued by the app's own CA."""
    ca = CertificateAuthority.load(run.app_dir / ".lumi" / "ca")
    issued = ca.issue(identity.service_id("secure", service), lifetime=300, **kwargs)
    (tmp_path / "c.crt").write_bytes(issued.cert)
    (tmp_path / "c.key").write_bytes(issued.key)
    return ["--cert", str(tmp_path / "c.crt"), "--key", str(tmp_path / "c.key"), *trust(run)]


# -- who calls -----------------------------------------------------------------------------------


def test_plain_curl_to_a_private_method_is_refused(secure: LumiRun) -> None:
    """curl over plain HTTP to a TLS port gets 401 UNAUTHENTICATED saying to use TLS, and
    Store.put never runs."""
    plain = secure.raw_endpoint("Store")
    status, body = answer(curl(f"{plain}/Store/put", "-H", JSON, "-d", '{"key":"a","value":"b"}'))
    assert (status, body["code"]) == (401, "UNAUTHENTICATED")
    assert "speaks TLS" in body["message"]
    assert "put" not in history(secure)


def test_a_caller_without_a_certificate_is_unauthenticated(secure: LumiRun) -> None:
    """HTTPS without a client certificate to a private method: 401 UNAUTHENTICATED, even with
    arguments that do not validate (the check comes before parsing); the method never runs."""
    for data in ('{"key":"a","value":"b"}', '{"key": 5}'):
        status, body = answer(curl(url(secure, "Store", "put"), *trust(secure), "-H", JSON,
                                   "-d", data))  # fmt: skip
        assert (status, body["code"]) == (401, "UNAUTHENTICATED"), body
        assert "Store.put is not public" in body["message"]
    assert "put" not in history(secure)


async def test_a_certificate_from_another_apps_ca_is_unauthenticated(
    secure: LumiRun, tmp_path: Path
) -> None:
    """A certificate naming spiffe://secure/Middle but issued by another app's CA is refused
    at the handshake: a Lumi channel raises UNAUTHENTICATED (unknown CA) and curl reports
    the TLS alert; Store.put never runs."""
    other = TlsKit(tmp_path / "other", app="secure")  # same names, its own CA
    issued = other.issue("Middle")
    folder = other.write("Middle", issued, ca=(secure.operator() / "ca.crt").read_bytes())
    tls = Tls(TlsFiles.in_folder(folder))
    settings = ChannelSettings(tls=tls, server_name=identity.server_name("secure", "Store"))
    channel = HttpTransport().channel(secure.raw_endpoint("Store"), None, settings)
    body = b'{"key": "a", "value": "b"}'
    try:
        with pytest.raises(lumi.Unauthenticated, match="unknown ca"):
            await channel.call(Call("Store", "put", body, Metadata(deadline=time.time() + 10)))
    finally:
        await channel.aclose()
    result = curl(url(secure, "Store", "put"), "--cert", str(folder / "tls.crt"), "--key",
                  str(folder / "tls.key"), *trust(secure), "-H", JSON, "-d", body.decode())  # fmt: skip
    assert result.returncode != 0 and "unknown ca" in result.stderr.lower(), result
    assert "put" not in history(secure)


def test_a_service_not_allowed_is_permission_denied_before_parsing(
    secure: LumiRun, tmp_path: Path
) -> None:
    """Intruder (a service of the app, not in Store's allow list) is PERMISSION_DENIED by
    Store — through the app, and with its certificate from curl even with arguments that do
    not validate — while the method it is allowed (peek) serves. Store.put never runs."""
    response = secure.post("Intruder", "try_put", {})
    assert response.status_code == 403, response.text
    assert response.json()["code"] == "PERMISSION_DENIED"
    assert "spiffe://secure/Intruder may not call Store.put" in response.json()["message"]
    intruder = identity_files(secure, tmp_path, "Intruder")
    status, body = answer(curl(url(secure, "Store", "put"), *intruder, "-H", JSON,
                               "-d", '{"key": 5}'))  # fmt: skip
    assert (status, body["code"]) == (403, "PERMISSION_DENIED"), body
    assert secure.post("Intruder", "try_peek", {}).json() >= 0
    assert "put" not in history(secure) and "peek" in history(secure)


def test_a_spoofed_caller_header_is_ignored(secure: LumiRun, tmp_path: Path) -> None:
    """Claiming to be Middle in x-lumi-caller changes nothing: Intruder is still refused, and
    Store sees the operator's certificate identity, not the claim."""
    intruder = identity_files(secure, tmp_path, "Intruder")
    for claim in ("spiffe://secure/Middle", "Middle"):
        status, body = answer(curl(url(secure, "Store", "put"), *intruder, "-H", JSON,
                                   "-H", f"x-lumi-caller: {claim}",
                                   "-d", '{"key":"a","value":"b"}'))  # fmt: skip
        assert (status, body["code"]) == (403, "PERMISSION_DENIED"), body
    response = secure.post(
        "Store", "whoami", {}, headers={"x-lumi-caller": "spiffe://secure/Middle"}
    )
    assert response.json()[0]["caller"] == "spiffe://secure/lumi/operator"
    assert "put" not in history(secure)


async def test_an_expired_certificate_is_rejected(secure: LumiRun, tmp_path: Path) -> None:
    """A certificate of the app's own CA for Middle, past its lifetime, is refused at the
    handshake: UNAUTHENTICATED (certificate expired) for a Lumi channel, the alert for curl."""
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=2)
    args = identity_files(secure, tmp_path, "Middle", not_before=past)
    result = curl(url(secure, "Store", "get"), *args, "-H", JSON, "-d", '{"key":"a"}')
    assert result.returncode != 0 and "certificate expired" in result.stderr.lower(), result
    kit = TlsKit(tmp_path / "kit", app="secure")
    kit.ca = CertificateAuthority.load(secure.app_dir / ".lumi" / "ca")
    tls = kit.expired("Middle")
    settings = ChannelSettings(tls=tls, server_name=identity.server_name("secure", "Store"))
    channel = HttpTransport().channel(secure.raw_endpoint("Store"), None, settings)
    try:
        with pytest.raises(lumi.Unauthenticated, match="certificate expired"):
            await channel.call(Call("Store", "get", b'{"key": "a"}', Metadata()))
    finally:
        await channel.aclose()


def test_curl_with_the_operator_certificate_calls_private_methods(secure: LumiRun) -> None:
    """The operator's certificate lumi run issued lets curl (a client Lumi did not write) call
    Store.put and Store.get, which only Middle may call otherwise."""
    status, _ = answer(curl(url(secure, "Store", "put"), *operator(secure), "-H", JSON,
                            "-d", '{"key":"colour","value":"blue"}'))  # fmt: skip
    assert status == 200
    status, body = answer(curl(url(secure, "Store", "get"), *operator(secure), "-H", JSON,
                               "-d", '{"key":"colour"}'))  # fmt: skip
    assert (status, body) == (200, "blue")


def test_lumi_call_and_lumi_ls_work_as_the_operator(secure: LumiRun) -> None:
    """lumi call reaches a private method as the operator; lumi ls shows each method's
    effective callers and marks public ones."""
    called = subprocess.run(
        ["python", "-m", "lumi.cli.main", "call", "Store.history", "--app", str(secure.app_dir)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert called.returncode == 0, called.stderr
    assert isinstance(json.loads(called.stdout), list)
    listed = subprocess.run(
        ["python", "-m", "lumi.cli.main", "ls", "--app", str(secure.app_dir)],
        capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    assert "access: default deny; every method: Middle; the operator: every method" in listed
    assert "peek() -> int (idempotent) [Intruder, Middle, operator]" in listed
    assert "put(key: str, value: str) -> None [Middle, operator]" in listed
    assert "whoami() -> list[Seen] (idempotent) [public]" in listed
    assert "bearer tokens verified for public methods" in listed


# -- end users -----------------------------------------------------------------------------------


def test_a_public_method_with_a_valid_token_serves_and_the_user_reaches_two_hops(
    secure: LumiRun,
) -> None:
    """curl with no certificate but a valid bearer token calls Front.whoami; the user (with the
    claims the auth handler kept) is seen by Front, Middle and Store, each hop's caller the
    previous service's certificate identity."""
    status, seen = answer(curl(url(secure, "Front", "whoami"), *trust(secure), "-H", JSON,
                               "-H", f"authorization: Bearer {token()}", "-d", "{}"))  # fmt: skip
    assert status == 200, seen
    assert [(s["service"], s["user"], s["role"]) for s in seen] == [
        ("Front", "ada", "buyer"),
        ("Middle", "ada", "buyer"),
        ("Store", "ada", "buyer"),
    ]
    assert [s["caller"] for s in seen] == [None, "spiffe://secure/Front", "spiffe://secure/Middle"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: token(exp=int(time.time()) - 60), "has expired"),
        (lambda: token(key="another-key-" + "x" * 32), "signature does not verify"),
        (lambda: token(aud="elsewhere"), "another audience"),
        (
            lambda: jwt.encode({"sub": "ada", "aud": "secure"}, None, algorithm="none"),
            "signed with",
        ),
        (lambda: "not-a-token", "not a JWT"),
    ],
    ids=["expired", "bad-signature", "audience", "unsigned", "garbage"],
)
def test_a_bad_token_is_unauthenticated_and_never_echoed(
    secure: LumiRun, make: Callable[[], str], message: str
) -> None:
    """An expired, badly signed, foreign-audience, unsigned or malformed token: 401
    UNAUTHENTICATED naming what is wrong, without the token in the answer; nothing runs.
    (Each token is made when its case runs: made at collection, a good one could expire.)"""
    bearer = make()
    before = history(secure)
    status, body = answer(curl(url(secure, "Front", "whoami"), *trust(secure), "-H", JSON,
                               "-H", f"authorization: Bearer {bearer}", "-d", "{}"))  # fmt: skip
    assert (status, body["code"]) == (401, "UNAUTHENTICATED"), body
    assert message in body["message"]
    assert bearer not in json.dumps(body)
    assert history(secure) == before


def test_a_public_call_without_a_token_and_a_private_one_with_a_token_are_refused(
    secure: LumiRun,
) -> None:
    """Without a token, Front's public method is refused (its handler does not take None); a
    valid token does not open a private method to a caller without a certificate."""
    status, body = answer(curl(url(secure, "Front", "whoami"), *trust(secure), "-H", JSON,
                               "-d", "{}"))  # fmt: skip
    assert (status, body["code"]) == (401, "UNAUTHENTICATED")
    assert "needs a bearer token" in body["message"]
    status, body = answer(curl(url(secure, "Front", "private_hello"), *trust(secure), "-H", JSON,
                               "-H", f"authorization: Bearer {token()}", "-d", "{}"))  # fmt: skip
    assert (status, body["code"]) == (401, "UNAUTHENTICATED")


# -- renewal and secrets -------------------------------------------------------------------------


def _served_serial(run: LumiRun, service: str) -> int:
    import socket
    import ssl

    from cryptography import x509

    host, port = run.raw_endpoint(service).split("://", 1)[1].rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(run.operator() / "ca.crt"))
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_replicas_renew_their_certificates_under_load_without_a_failed_call(
    secure: LumiRun,
) -> None:
    """For more than twice the certificates' lifetime, calls flow without pause — each on a
    new connection, so each handshake needs the callee's current certificate — through
    Front → Middle → Store and straight to Store: not one fails, and Store is served a new
    certificate each time lumi run renews it."""
    bearer = token()
    failures: list[str] = []
    done = threading.Event()
    counts = {"ok": 0}
    serials: set[int] = set()

    def load() -> None:
        fresh = httpx.Limits(max_keepalive_connections=0)
        with secure.client(timeout=15, limits=fresh) as http:
            while not done.is_set():
                for service, method, headers in (
                    ("Front", "whoami", {"authorization": f"Bearer {bearer}"}),
                    ("Store", "get", {}),
                ):
                    body = b'{"key": "colour"}' if method == "get" else b"{}"
                    try:
                        response = http.post(
                            url(secure, service, method), content=body,
                            headers={"content-type": "application/json", **headers},
                        )  # fmt: skip
                        if response.status_code == 200:
                            counts["ok"] += 1
                        else:
                            failures.append(f"{service}.{method}: {response.text}")
                    except httpx.HTTPError as exc:
                        failures.append(f"{service}.{method}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=load) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 2.5 * LIFETIME
        while time.monotonic() < deadline:
            serials.add(_served_serial(secure, "Store"))
            time.sleep(0.5)
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not failures, failures[:5]
    assert counts["ok"] > 50
    assert len(serials) >= 3, f"Store was served {len(serials)} certificates"
    generations = list((secure.app_dir / ".lumi" / "ca" / "certs" / "Store.0").glob("..gen-*"))
    assert max(int(p.name.rsplit("-", 1)[1]) for p in generations) >= 4


def test_secrets_never_reach_a_log_line_or_the_output(secure: LumiRun) -> None:
    """After calls with good and bad tokens, neither the JWT key, nor any token, nor a private
    key appears in lumi run's output or in any service's log file."""
    tokens = [token(), token(exp=int(time.time()) - 60), token(key="wrong-" + "y" * 32)]
    for bearer in tokens:
        curl(url(secure, "Front", "whoami"), *trust(secure), "-H", JSON,
             "-H", f"authorization: Bearer {bearer}", "-d", "{}")  # fmt: skip
    keys = [
        line
        for folder in (secure.app_dir / ".lumi" / "ca").rglob("tls.key")
        for line in folder.read_text().splitlines()
        if "PRIVATE KEY" not in line
    ]
    keys += [
        line
        for line in (secure.app_dir / ".lumi" / "ca" / "ca.key").read_text().splitlines()
        if "PRIVATE KEY" not in line
    ]
    logs = [secure.output] + [
        p.read_text() for p in (secure.app_dir / ".lumi" / "logs").glob("*.log")
    ]
    assert any("Front.whoami UNAUTHENTICATED" in text for text in logs)  # the calls were logged
    for text in logs:
        assert KEY not in text
        for bearer in tokens:
            assert bearer not in text and bearer.split(".")[2] not in text
        for line in keys:
            assert line not in text
