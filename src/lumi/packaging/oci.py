"""The OCI pieces Lumi artifacts are made of: descriptors, image manifests, digests, and
reproducible tar archives.

An artifact is a standard OCI image manifest (image-spec 1.1) whose config blob is Lumi's own
manifest (JSON) and whose layers are files. Every byte that goes into a digest is produced
deterministically: JSON with sorted keys and no whitespace, tar entries sorted with fixed
owners, modes and mtimes, gzip without a timestamp or file name.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import re
import tarfile
from collections.abc import Mapping
from typing import Any

from lumi.packaging.errors import IntegrityError

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
ARTIFACT_TYPE = "application/vnd.lumi.service.v1"
CONFIG_MEDIA_TYPE = "application/vnd.lumi.service.config.v1+json"
WHEEL_MEDIA_TYPE = "application/vnd.lumi.wheel.v1+zip"
LOCK_MEDIA_TYPE = "application/vnd.lumi.requirements.v1+text"
CLIENTS_MEDIA_TYPE = "application/vnd.lumi.clients.v1.tar+gzip"
SIGNATURE_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
TITLE = "org.opencontainers.image.title"
VERSION_ANNOTATION = "org.opencontainers.image.version"
CREATED = "org.opencontainers.image.created"
REVISION = "org.opencontainers.image.revision"
SERVICE_ANNOTATION = "dev.lumi.service"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# distribution-spec: repository path components and tags
_REPO = re.compile(
    r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$"
)
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


def digest_of(data: bytes) -> str:
    """The OCI digest (``sha256:<hex>``) of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_digest(digest: str) -> str:
    """``digest`` if it is a well-formed sha256 digest (the only algorithm Lumi writes)."""
    if not _DIGEST.match(digest):
        raise IntegrityError(f"{digest!r} is not a sha256 digest (sha256:<64 hex digits>)")
    return digest


def verify(data: bytes, digest: str, size: int | None, what: str) -> bytes:
    """``data`` unchanged if it has this digest and size; otherwise an :class:`IntegrityError`."""
    actual = digest_of(data)
    if actual != digest or (size is not None and len(data) != size):
        raise IntegrityError(
            f"{what}: content does not match its digest (expected {digest[:19]}…, "
            f"{size} bytes; got {actual[:19]}…, {len(data)} bytes); refusing it"
        )
    return data


def canonical_json(value: Any) -> bytes:
    """JSON with sorted keys and no whitespace: the same value always gives the same bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def check_repository_name(name: str) -> str:
    if not _REPO.match(name):
        raise ValueError(f"{name!r} is not a valid OCI repository name (lowercase a-z0-9._-/)")
    return name


def check_tag(tag: str) -> str:
    if not _TAG.match(tag):
        raise ValueError(f"{tag!r} is not a valid OCI tag")
    return tag


@dataclasses.dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor: what a manifest says about one blob."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, media_type: str, data: bytes, **annotations: str) -> Descriptor:
        return cls(media_type, digest_of(data), len(data), dict(annotations))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Descriptor:
        try:
            digest, size, media_type = data["digest"], data["size"], data["mediaType"]
        except (KeyError, TypeError) as exc:
            raise IntegrityError(f"a descriptor lacks {exc}") from None
        if not isinstance(size, int) or size < 0 or not isinstance(media_type, str):
            raise IntegrityError(f"descriptor of {digest!r} has a bad size or media type")
        return cls(media_type, check_digest(str(digest)), size, dict(data.get("annotations", {})))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest,
                               "size": self.size}  # fmt: skip
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @property
    def title(self) -> str:
        return self.annotations.get(TITLE, self.digest)


def image_manifest(
    config: Descriptor,
    layers: list[Descriptor],
    *,
    artifact_type: str | None = None,
    annotations: Mapping[str, str] | None = None,
) -> bytes:
    """The canonical bytes of an OCI image manifest."""
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": config.to_dict(),
        "layers": [layer.to_dict() for layer in layers],
    }
    if artifact_type:
        manifest["artifactType"] = artifact_type
    if annotations:
        manifest["annotations"] = dict(annotations)
    return canonical_json(manifest)


@dataclasses.dataclass(frozen=True)
class ParsedManifest:
    """An image manifest read back: its config and layer descriptors and annotations."""

    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str]
    artifact_type: str | None


def parse_manifest(data: bytes, what: str) -> ParsedManifest:
    """Parse an image manifest, refusing anything that is not one."""
    try:
        raw = json.loads(data)
    except ValueError:
        raise IntegrityError(f"{what}: manifest is not JSON") from None
    if not isinstance(raw, dict) or raw.get("schemaVersion") != 2:
        raise IntegrityError(f"{what}: not an OCI image manifest (schemaVersion 2)")
    if raw.get("mediaType", MANIFEST_MEDIA_TYPE) != MANIFEST_MEDIA_TYPE:
        raise IntegrityError(
            f"{what}: media type {raw.get('mediaType')!r} is not an image manifest"
        )
    layers = raw.get("layers")
    if not isinstance(layers, list) or not isinstance(raw.get("config"), dict):
        raise IntegrityError(f"{what}: manifest has no config or layers")
    return ParsedManifest(
        config=Descriptor.from_dict(raw["config"]),
        layers=tuple(Descriptor.from_dict(layer) for layer in layers),
        annotations=dict(raw.get("annotations") or {}),
        artifact_type=raw.get("artifactType"),
    )


def reproducible_targz(files: Mapping[str, bytes], mtime: int) -> bytes:
    """A gzipped tar of ``files`` (relative path → bytes) that depends only on its input:
    sorted entries, owner 0:0, mode 0644, every mtime ``mtime``, no gzip timestamp or name."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(files):
            data = files[path]
            info = tarfile.TarInfo(path)
            info.size, info.mtime, info.mode = len(data), mtime, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def read_targz(data: bytes, *, max_bytes: int = 256 * 1024 * 1024) -> dict[str, bytes]:
    """The regular files of a tar.gz written by :func:`reproducible_targz`. Paths that leave
    the archive (absolute, ``..``) and links are refused; so is more than ``max_bytes``."""
    files: dict[str, bytes] = {}
    total = 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar:
            parts = member.name.split("/")
            if member.name.startswith("/") or ".." in parts or not member.isfile():
                raise IntegrityError(f"archive entry {member.name!r} is not a plain relative file")
            total += member.size
            if total > max_bytes:
                raise IntegrityError(f"archive unpacks to more than {max_bytes} bytes")
            extracted = tar.extractfile(member)
            files[member.name] = extracted.read() if extracted else b""
    return files
