"""Artifact signatures: ed25519 keys (PEM), stored the way cosign stores them.

A signature of the manifest ``sha256:<hex>`` in repository ``R`` is an OCI manifest tagged
``sha256-<hex>.sig`` in ``R`` whose one layer is cosign's "simple signing" payload (naming ``R``
and the manifest digest) with the base64 signature in the ``dev.cosignproject.cosign/signature``
annotation. Only the key type differs from cosign's default (ed25519 instead of ECDSA P-256),
because ed25519 signatures are deterministic and need no parameters.

Keys: ``lumi repo keygen DIR`` writes ``lumi-signing.key`` (PKCS#8, mode 0600; encrypted when
``LUMI_SIGNING_KEY_PASSWORD`` is set) and ``lumi-signing.pub`` (SubjectPublicKeyInfo).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from lumi.packaging import oci
from lumi.packaging.errors import PackagingError, SignatureError

PRIVATE_FILE = "lumi-signing.key"
PUBLIC_FILE = "lumi-signing.pub"
_PASSWORD_ENV = "LUMI_SIGNING_KEY_PASSWORD"


def signature_tag(digest: str) -> str:
    """The tag holding the signature of manifest ``digest`` (cosign's scheme)."""
    return oci.check_digest(digest).replace(":", "-") + ".sig"


def payload(repo: str, digest: str) -> bytes:
    """Cosign's simple-signing payload for ``digest`` in ``repo``."""
    return oci.canonical_json(
        {
            "critical": {
                "identity": {"docker-reference": repo},
                "image": {"docker-manifest-digest": digest},
                "type": "cosign container image signature",
            },
            "optional": None,
        }
    )


class Signer:
    """Signs manifests with an ed25519 private key."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key

    @classmethod
    def from_file(cls, path: str | Path) -> Signer:
        file = Path(path).expanduser()
        password = os.environ.get(_PASSWORD_ENV)
        try:
            key = serialization.load_pem_private_key(
                file.read_bytes(), password.encode() if password else None
            )
        except OSError as exc:
            raise PackagingError(f"{file}: cannot read the signing key: {exc.strerror}") from None
        except (ValueError, TypeError) as exc:
            raise PackagingError(f"{file}: not a usable PEM private key ({exc})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise PackagingError(f"{file}: not an ed25519 key (make one with lumi repo keygen)")
        return cls(key)

    def sign(self, repo: str, digest: str) -> tuple[bytes, str]:
        """The payload and its base64 signature."""
        body = payload(repo, digest)
        return body, base64.b64encode(self._key.sign(body)).decode()


class Verifier:
    """Checks signatures against one trusted ed25519 public key."""

    def __init__(self, key: Ed25519PublicKey) -> None:
        self._key = key

    @classmethod
    def from_file(cls, path: str | Path) -> Verifier:
        file = Path(path).expanduser()
        try:
            key = serialization.load_pem_public_key(file.read_bytes())
        except OSError as exc:
            raise PackagingError(f"{file}: cannot read the trust key: {exc.strerror}") from None
        except ValueError as exc:
            raise PackagingError(f"{file}: not a PEM public key ({exc})") from None
        if not isinstance(key, Ed25519PublicKey):
            raise PackagingError(f"{file}: not an ed25519 public key")
        return cls(key)

    def verify(self, repo: str, digest: str, body: bytes, signature: str, what: str) -> None:
        """Raise :class:`SignatureError` unless ``signature`` signs ``body`` and ``body`` names
        exactly this repository and digest."""
        try:
            raw = base64.b64decode(signature, validate=True)
            self._key.verify(raw, body)
        except (binascii.Error, InvalidSignature):
            raise SignatureError(
                f"{what}: the signature does not verify with the trust key"
            ) from None
        try:
            critical = json.loads(body)["critical"]
            signed_digest = critical["image"]["docker-manifest-digest"]
            signed_repo = critical["identity"]["docker-reference"]
        except (ValueError, KeyError, TypeError):
            raise SignatureError(
                f"{what}: the signed payload is not a simple-signing payload"
            ) from None
        if signed_digest != digest or signed_repo != repo:
            raise SignatureError(
                f"{what}: the signature is for {signed_repo}@{str(signed_digest)[:19]}…, "
                f"not this artifact"
            )


def generate_keypair(folder: str | Path) -> tuple[Path, Path]:
    """Write a new key pair into ``folder``; refuses to overwrite an existing key."""
    target = Path(folder).expanduser()
    target.mkdir(parents=True, exist_ok=True)
    private, public = target / PRIVATE_FILE, target / PUBLIC_FILE
    if private.exists():
        raise PackagingError(f"{private} exists; refusing to overwrite a signing key")
    key = Ed25519PrivateKey.generate()
    password = os.environ.get(_PASSWORD_ENV)
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode())
        if password
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            encryption)  # fmt: skip
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public
