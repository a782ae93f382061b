"""The Redis broker against a redis-server with a password and one speaking only TLS."""

from __future__ import annotations

import datetime
import ipaddress
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lumi.brokers import create_broker
from lumi.brokers.base import Delivery
from lumi.model.envelope import Envelope
from lumi.model.errors import ConfigError, Unavailable
from lumi.testing import wait_until
from tests.engines.redis import RedisServer

PASSWORD = "pw-never-logged-7f3a"


@pytest.fixture(scope="module")
def secured() -> Iterator[RedisServer]:
    """A redis-server that requires PASSWORD."""
    server = RedisServer(appendonly=False, password=PASSWORD)
    server.start()
    yield server
    server.destroy()


def _event(n: int) -> Envelope:
    return Envelope(id=f"e{n}", source="/test", type="Sec.ure", data=b'{"n": %d}' % n)


async def _round_trip(url: str, app_dir: Path) -> None:
    got: list[str] = []

    async def handler(delivery: Delivery) -> None:
        got.append(delivery.envelope.id)

    async with create_broker(url, app_dir=app_dir) as broker:
        await broker.subscribe("Sec.ure", "G", handler)
        await broker.publish("Sec.ure", [_event(1), _event(2)])
        await wait_until(lambda: got == ["e1", "e2"], timeout=15, message="both events")


async def test_password_from_the_environment_never_reaches_a_log_line(
    secured: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """With ${REDIS_PASSWORD} in the URL the broker connects and delivers; neither its logs
    (every logger, DEBUG) nor the error for a wrong password contain the password."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("LUMI_TEST_REDIS_PASSWORD", PASSWORD)
    url = f"redis://:${{LUMI_TEST_REDIS_PASSWORD}}@127.0.0.1:{secured.port}/0"
    await _round_trip(url, tmp_path)
    monkeypatch.setenv("LUMI_TEST_REDIS_PASSWORD", PASSWORD + "-wrong")
    with pytest.raises(ConfigError) as refused:
        await create_broker(url, app_dir=tmp_path).start()
    assert "refused Lumi" in str(refused.value) and ":***@" in str(refused.value)
    assert PASSWORD not in str(refused.value)
    assert caplog.records and not any(PASSWORD in r.getMessage() for r in caplog.records)


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lumi test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    paths = folder / "server.pem", folder / "server.key", folder / "ca.pem"
    paths[0].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    paths[2].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return paths


async def test_tls_with_a_private_ca(tmp_path: Path) -> None:
    """rediss:// with ssl_ca_certs reaches a TLS-only redis-server and verifies its
    certificate; without the CA the connection is refused."""
    cert, key, ca = _certificates(tmp_path)
    server = RedisServer(appendonly=False, tls=(cert, key, ca))
    server.start()
    try:
        await _round_trip(f"{server.url}?ssl_ca_certs={ca}", tmp_path)
        untrusted = create_broker(f"{server.url}?connect_timeout=1s", app_dir=tmp_path)
        with pytest.raises(Unavailable, match="cannot reach redis"):
            await untrusted.start()
    finally:
        server.destroy()
