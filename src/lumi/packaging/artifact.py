"""A service artifact: what ``lumi build`` produces and a repository stores.

One OCI image manifest per service version::

    manifest (OCI image manifest, artifactType application/vnd.lumi.service.v1)
    ├── config   application/vnd.lumi.service.config.v1+json   the ArtifactManifest below
    ├── layer    application/vnd.lumi.wheel.v1+zip             the app's wheel
    ├── layer    application/vnd.lumi.requirements.v1+text     exact dependencies (pip syntax)
    └── layer    application/vnd.lumi.clients.v1.tar+gzip      generated clients (python, ts)

The config says everything deploy and the resolver need without opening a layer: the service,
its version, its interface and fingerprint, the services it requires (with ranges), its default
bindings and where it came from.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import pydantic

from lumi.codegen.schema import snake
from lumi.model.interface import ServiceInterface
from lumi.model.semver import parse, parse_range
from lumi.packaging import oci
from lumi.packaging.errors import IntegrityError, RepositoryError

FORMAT = 1
_STRICT = pydantic.ConfigDict(extra="forbid", frozen=True)


class Provenance(pydantic.BaseModel):
    """Where an artifact came from. ``created`` is pinned (SOURCE_DATE_EPOCH, else the commit's
    time), so it never makes two builds of the same source differ."""

    model_config = _STRICT

    commit: str | None = None
    dirty: bool = False
    builder: str
    build_backend: str = ""
    created: str
    source_date_epoch: int


class Bindings(pydantic.BaseModel):
    """The service's default bindings from the app's config (an environment may override)."""

    model_config = _STRICT

    rpc: list[str]
    events: str
    runtime: str
    replicas: int = 1
    placement: str = "default"


class ArtifactManifest(pydantic.BaseModel):
    """Lumi's manifest of one service version (the OCI config blob)."""

    model_config = _STRICT

    format: int = FORMAT
    app: str
    service: str
    version: str
    entry: str  # "package.module:Class"
    interface: dict[str, Any]
    fingerprint: str
    requires: dict[str, str] = pydantic.Field(default_factory=dict)  # service → range
    bindings: Bindings
    wheel: str  # the wheel's file name
    requires_python: str = ""
    provenance: Provenance

    @pydantic.field_validator("version")
    @classmethod
    def _check_version(cls, value: str) -> str:
        parse(value)
        return value

    @pydantic.field_validator("requires")
    @classmethod
    def _check_ranges(cls, value: dict[str, str]) -> dict[str, str]:
        for text in value.values():
            parse_range(text)
        return value

    def service_interface(self) -> ServiceInterface:
        return ServiceInterface.from_dict(self.interface)

    def to_bytes(self) -> bytes:
        return oci.canonical_json(self.model_dump(mode="json"))


def repository_name(service: str) -> str:
    """The OCI repository path component of a service: ``OrderHistory`` → ``order_history``."""
    return oci.check_repository_name(snake(service))


def tag_of(version: str) -> str:
    """The OCI tag of a version (``+`` is not allowed in tags; Helm's convention: ``_``)."""
    return oci.check_tag(version.replace("+", "_"))


@dataclasses.dataclass(frozen=True)
class Layer:
    descriptor: oci.Descriptor
    data: bytes = dataclasses.field(repr=False)  # never format megabytes into a repr


@dataclasses.dataclass(frozen=True)
class Artifact:
    """A complete artifact: manifest bytes, config and layers, all digest-checked."""

    manifest: ArtifactManifest = dataclasses.field(repr=False)
    manifest_bytes: bytes = dataclasses.field(repr=False)
    config: oci.Descriptor = dataclasses.field(repr=False)
    config_bytes: bytes = dataclasses.field(repr=False)
    layers: tuple[Layer, ...] = dataclasses.field(repr=False)

    def __repr__(self) -> str:
        return f"<Artifact {self.ref} {self.digest[:19]}…>"

    @property
    def digest(self) -> str:
        return oci.digest_of(self.manifest_bytes)

    @property
    def ref(self) -> str:
        return f"{self.manifest.service}@{self.manifest.version}"

    @property
    def size(self) -> int:
        return (
            len(self.manifest_bytes)
            + len(self.config_bytes)
            + sum(len(layer.data) for layer in self.layers)
        )

    def layer(self, media_type: str) -> Layer:
        for layer in self.layers:
            if layer.descriptor.media_type == media_type:
                return layer
        raise RepositoryError(f"{self.ref} has no layer of type {media_type}")

    @classmethod
    def create(cls, manifest: ArtifactManifest, files: list[tuple[str, str, bytes]]) -> Artifact:
        """Assemble an artifact from its manifest and ``(media type, title, bytes)`` files."""
        config_bytes = manifest.to_bytes()
        config = oci.Descriptor.of(oci.CONFIG_MEDIA_TYPE, config_bytes)
        layers = tuple(
            Layer(oci.Descriptor.of(media_type, data, **{oci.TITLE: title}), data)
            for media_type, title, data in files
        )
        annotations = {
            oci.SERVICE_ANNOTATION: manifest.service,
            oci.VERSION_ANNOTATION: manifest.version,
            oci.CREATED: manifest.provenance.created,
        }
        if manifest.provenance.commit:
            annotations[oci.REVISION] = manifest.provenance.commit
        manifest_bytes = oci.image_manifest(
            config,
            [layer.descriptor for layer in layers],
            artifact_type=oci.ARTIFACT_TYPE,
            annotations=annotations,
        )
        return cls(manifest, manifest_bytes, config, config_bytes, layers)

    @classmethod
    def assemble(cls, manifest_bytes: bytes, blobs: Mapping[str, bytes], *, what: str) -> Artifact:
        """Rebuild an artifact from its manifest and blobs (by digest), checking every digest
        and that the config is a Lumi manifest."""
        parsed = oci.parse_manifest(manifest_bytes, what)
        config_bytes = oci.verify(
            blobs[parsed.config.digest], parsed.config.digest, parsed.config.size, f"{what} config"
        )
        layers = tuple(
            Layer(d, oci.verify(blobs[d.digest], d.digest, d.size, f"{what} {d.title}"))
            for d in parsed.layers
        )
        return cls(read_config(config_bytes, what), manifest_bytes, parsed.config, config_bytes,
                   layers)  # fmt: skip


def read_config(data: bytes, what: str) -> ArtifactManifest:
    """The Lumi manifest in a config blob; anything else is refused."""
    try:
        return ArtifactManifest.model_validate(json.loads(data))
    except (ValueError, pydantic.ValidationError) as exc:
        first = str(exc).splitlines()[0]
        raise IntegrityError(f"{what}: config is not a Lumi artifact manifest ({first})") from None
