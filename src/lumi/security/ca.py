"""The app's certificate authority: ``lumi run`` issues every replica its own certificate.

On first run ``lumi run`` creates a CA for the app under ``.lumi/ca/`` (``ca.crt`` and
``ca.key``, readable by the user only) and, for every replica and for the operator, a
short-lived leaf certificate naming its SPIFFE identity (:mod:`lumi.security.identity`). A
folder of your own holding ``ca.crt`` and ``ca.key`` can take its place (``security.ca_dir``):
bring your own CA.

All cryptography is the ``cryptography`` library's; keys are EC P-256 by default (the fastest
handshakes measured with Python's OpenSSL, see docs/security.md) or Ed25519.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import os
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lumi.model.errors import ConfigError
from lumi.paths import private_dir

KeyType = Literal["ec", "ed25519"]
PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
CA_LIFETIME = datetime.timedelta(days=5 * 365)
CLOCK_SKEW = datetime.timedelta(minutes=1)  # a leaf is valid from slightly before it was made


def new_key(kind: KeyType = "ec") -> PrivateKey:
    """A fresh private key: EC P-256 or Ed25519."""
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP256R1())


def _hash_for(key: PrivateKey) -> hashes.SHA256 | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclasses.dataclass(frozen=True)
class Issued:
    """A leaf certificate and its key, as PEM."""

    cert: bytes
    key: bytes
    not_after: datetime.datetime


class CertificateAuthority:
    """A CA certificate and its key: issues leaf certificates for identities."""

    def __init__(self, cert: x509.Certificate, key: PrivateKey, key_type: KeyType = "ec") -> None:
        self.cert = cert
        self.key = key
        self.key_type = key_type

    @classmethod
    def create(cls, app: str, *, key_type: KeyType = "ec") -> CertificateAuthority:
        """A new self-signed CA for ``app``."""
        key = new_key(key_type)
        now = datetime.datetime.now(datetime.UTC)
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Lumi"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{app} CA"),
            ]
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, _hash_for(key))
        )
        return cls(cert, key, key_type)

    @classmethod
    def load(cls, folder: Path, *, key_type: KeyType = "ec") -> CertificateAuthority:
        """The CA in ``folder`` (``ca.crt``, ``ca.key``); ConfigError saying what is wrong."""
        try:
            cert = x509.load_pem_x509_certificate((folder / CA_CERT).read_bytes())
            loaded = serialization.load_pem_private_key((folder / CA_KEY).read_bytes(), None)
        except FileNotFoundError as exc:
            raise ConfigError(f"{folder}: no {Path(exc.filename).name} (a CA needs both "
                              f"{CA_CERT} and {CA_KEY})") from None  # fmt: skip
        except (ValueError, TypeError) as exc:
            # The library's message names the format problem, never the key's bytes.
            raise ConfigError(f"{folder}: cannot load the CA: {exc}") from None
        if not isinstance(loaded, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
            raise ConfigError(f"{folder}/{CA_KEY}: an EC or Ed25519 key is needed")
        if loaded.public_key() != cert.public_key():
            raise ConfigError(f"{folder}: {CA_KEY} is not the key of {CA_CERT}")
        return cls(cert, loaded, key_type)

    @classmethod
    def load_or_create(
        cls, folder: Path, app: str, *, key_type: KeyType = "ec", min_left: float = 0
    ) -> CertificateAuthority:
        """The CA in ``folder``, created (private files) if there is none yet or the one there
        expires within ``min_left`` seconds."""
        if (folder / CA_CERT).exists() or (folder / CA_KEY).exists():
            found = cls.load(folder, key_type=key_type)
            left = found.cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
            if left.total_seconds() > min_left:
                return found
        made = cls.create(app, key_type=key_type)
        private_dir(folder)
        write_private(folder / CA_KEY, key_pem(made.key))
        write_private(folder / CA_CERT, cert_pem(made.cert))
        return made

    @property
    def cert_pem(self) -> bytes:
        return cert_pem(self.cert)

    def issue(
        self,
        identity: str,
        *,
        lifetime: float,
        dns: tuple[str, ...] = (),
        ips: tuple[str, ...] = (),
        server: bool = True,
        not_before: datetime.datetime | None = None,
    ) -> Issued:
        """A leaf certificate for ``identity`` (a SPIFFE URI), valid for ``lifetime`` seconds
        from ``not_before`` (default: now, less a minute of clock skew)."""
        key = new_key(self.key_type)
        start = not_before or datetime.datetime.now(datetime.UTC) - CLOCK_SKEW
        end = start + CLOCK_SKEW + datetime.timedelta(seconds=lifetime)
        names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(identity)]
        names += [x509.DNSName(name) for name in dns]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))  # SPIFFE: the identity is the URI name, not the subject
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(names), critical=True)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=False,
                    crl_sign=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=isinstance(key, ec.EllipticCurvePrivateKey),
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), False
            )
            .sign(self.key, _hash_for(self.key))
        )
        return Issued(cert_pem(cert), key_pem(key), end)


def write_private(path: Path, data: bytes) -> None:
    """Write ``path`` atomically, readable by this user only (0600)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.replace(tmp, path)
