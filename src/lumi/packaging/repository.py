"""The artifact repository: the one contract publishing, resolving and deploying go through.

:class:`Repository` puts safety on top of any :class:`~lumi.packaging.store.base.Store`:

* **immutability** — a version, once published, keeps its content; pushing it again with the
  same bytes is a no-op, with different bytes an :class:`ImmutableError`, raised before any
  byte is written;
* **integrity** — everything pulled is checked against its digest (manifest, config, every
  layer) before it is returned, and a blob is never read past its declared size;
* **signatures** — with a signer, every push is signed; with a trust key, a pull of an
  unsigned or wrongly signed artifact is a :class:`SignatureError`.

Deploy needs only :meth:`Repository.versions`, :meth:`Repository.manifest` (service, version,
digest, interface, requires, bindings — no layers) and :meth:`Repository.pull` (by version or
by the digest a lock or a deployment recorded).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lumi.model.semver import parse, sort_versions
from lumi.packaging import oci
from lumi.packaging.artifact import Artifact, ArtifactManifest, read_config, repository_name, tag_of
from lumi.packaging.errors import (
    ImmutableError,
    IntegrityError,
    NotFoundError,
    PackagingError,
    SignatureError,
)
from lumi.packaging.store.base import Progress, Store, TagTaken, no_progress

if TYPE_CHECKING:  # signing needs the `shipping` extra (cryptography) only when keys are used
    from lumi.packaging.signing import Signer, Verifier

MAX_ARTIFACT_BYTES = 1 << 30
_EMPTY_CONFIG = b"{}"


@dataclasses.dataclass(frozen=True)
class Published:
    """What the repository says about one published version, without its layers."""

    service: str
    version: str
    digest: str
    manifest: ArtifactManifest
    size: int


@dataclasses.dataclass(frozen=True)
class PushResult:
    ref: str
    digest: str
    created: bool  # False: the same content was already published under this version
    signed: bool


def check_unchanged(artifact: Artifact, published: str | None, where: str) -> None:
    """Refuse ``artifact`` if its version is published under another digest."""
    if published is not None and published != artifact.digest:
        service, version = artifact.manifest.service, artifact.manifest.version
        raise ImmutableError(
            f"{service}@{version} is already published in {where} with different content "
            f"({published[:19]}…, this build {artifact.digest[:19]}…); versions are "
            f"immutable: bump the version (lumi version {service} patch)"
        )


def parse_ref(text: str) -> tuple[str, str | None]:
    """``Orders@1.2.0`` → ``("Orders", "1.2.0")``; ``Orders@sha256:…`` keeps the digest;
    ``Orders`` → ``("Orders", None)`` (the latest)."""
    service, sep, reference = text.partition("@")
    if not service or (sep and not reference):
        raise NotFoundError(f"{text!r} is not SERVICE@VERSION (like Orders@1.2.0)")
    if reference and not reference.startswith("sha256:"):
        parse(reference)
    return service, reference or None


class Repository:
    """Versioned, immutable, verified service artifacts in a :class:`Store`."""

    def __init__(
        self,
        store: Store,
        *,
        namespace: str = "",
        signer: Signer | None = None,
        verifier: Verifier | None = None,
        max_artifact_bytes: int = MAX_ARTIFACT_BYTES,
    ) -> None:
        self.store = store
        self.namespace = namespace.strip("/")
        if self.namespace:
            oci.check_repository_name(self.namespace)
        self.signer = signer
        self.verifier = verifier
        self.max_artifact_bytes = max_artifact_bytes

    @property
    def url(self) -> str:
        return f"{self.store.url}/{self.namespace}" if self.namespace else self.store.url

    def repo(self, service: str) -> str:
        """The OCI repository path of ``service``."""
        name = repository_name(service)
        return f"{self.namespace}/{name}" if self.namespace else name

    # --- reading ----------------------------------------------------------------------------

    async def versions(self, service: str) -> list[str]:
        """The published versions of ``service``, oldest first."""
        tags = await self.store.tags(self.repo(service))
        return sort_versions([t.replace("_", "+") for t in tags])

    async def latest(self, service: str, *, before: str | None = None) -> str | None:
        """The newest published version (below ``before`` if given), or ``None``."""
        versions = await self.versions(service)
        if before is not None:
            versions = [v for v in versions if parse(v) < parse(before)]
        return versions[-1] if versions else None

    async def published_digest(self, service: str, version: str) -> str | None:
        """The manifest digest published as ``service@version``, or ``None``."""
        data = await self.store.get_manifest(self.repo(service), tag_of(version))
        return None if data is None else oci.digest_of(data)

    async def services(self) -> list[str]:
        """Every service with a published version, by name."""
        prefix = f"{self.namespace}/" if self.namespace else ""
        names = []
        for repo in await self.store.repositories():
            rest = repo[len(prefix) :] if repo.startswith(prefix) else None
            if rest is None or "/" in rest:
                continue
            tags = sort_versions([t.replace("_", "+") for t in await self.store.tags(repo)])
            if tags:
                data = await self.store.get_manifest(repo, tag_of(tags[-1]))
                if data is not None:
                    parsed = oci.parse_manifest(data, repo)
                    names.append(parsed.annotations.get(oci.SERVICE_ANNOTATION, rest))
        return sorted(names)

    async def manifest(self, service: str, reference: str | None = None) -> Published:
        """Service, version, digest and Lumi manifest of ``service@reference`` (default: the
        latest), verified like a pull but without downloading layers."""
        data, digest, what = await self._manifest_bytes(service, reference)
        parsed = oci.parse_manifest(data, what)
        config = await self._blob(service, parsed.config, no_progress, f"{what} config")
        manifest = self._check_identity(read_config(config, what), service, reference, what)
        size = len(data) + parsed.config.size + sum(layer.size for layer in parsed.layers)
        return Published(manifest.service, manifest.version, digest, manifest, size)

    async def pull(
        self, service: str, reference: str | None = None, *, progress: Progress = no_progress
    ) -> Artifact:
        """The artifact ``service@reference`` (a version or a digest; default: the latest),
        with every digest (and, with a trust key, the signature) checked."""
        data, _, what = await self._manifest_bytes(service, reference)
        parsed = oci.parse_manifest(data, what)
        total = parsed.config.size + sum(layer.size for layer in parsed.layers)
        if total > self.max_artifact_bytes:
            raise IntegrityError(
                f"{what} is {total} bytes, over the {self.max_artifact_bytes} limit"
            )
        blobs: dict[str, bytes] = {}
        repo = self.repo(service)
        for descriptor in (parsed.config, *parsed.layers):
            if descriptor.digest not in blobs:
                blob = await self.store.get_blob(repo, descriptor.digest, descriptor.size, progress)
                if blob is None:
                    raise IntegrityError(f"{what}: blob {descriptor.digest[:19]}… is missing")
                blobs[descriptor.digest] = blob
        artifact = Artifact.assemble(data, blobs, what=what)  # checks every digest, once
        self._check_identity(artifact.manifest, service, reference, what)
        return artifact

    async def _manifest_bytes(self, service: str, reference: str | None) -> tuple[bytes, str, str]:
        repo = self.repo(service)
        if reference is None:
            reference = await self.latest(service)
            if reference is None:
                raise NotFoundError(f"no version of {service} in {self.url}")
        what = f"{service}@{reference}"
        ref = reference if reference.startswith("sha256:") else tag_of(reference)
        data = await self.store.get_manifest(repo, ref)
        if data is None:
            known = await self.versions(service)
            listed = ", ".join(known[-8:]) if known else "none published"
            raise NotFoundError(f"no {what} in {self.url} (versions: {listed})")
        if len(data) > 4 << 20:
            raise IntegrityError(f"{what}: manifest over 4 MiB; refusing it")
        digest = oci.digest_of(data)
        if reference.startswith("sha256:") and digest != reference:
            raise IntegrityError(f"{what}: the registry returned a manifest with digest {digest}")
        if self.verifier is not None:
            await self._verify_signature(repo, digest, what)
        return data, digest, what

    async def _blob(
        self, service: str, descriptor: oci.Descriptor, progress: Progress, what: str
    ) -> bytes:
        data = await self.store.get_blob(
            self.repo(service), descriptor.digest, descriptor.size, progress
        )
        if data is None:
            raise IntegrityError(f"{what}: blob {descriptor.digest[:19]}… is missing")
        return oci.verify(data, descriptor.digest, descriptor.size, what)

    def _check_identity(
        self, manifest: ArtifactManifest, service: str, reference: str | None, what: str
    ) -> ArtifactManifest:
        if manifest.service != service or (
            reference is not None
            and not reference.startswith("sha256:")
            and manifest.version != reference
        ):
            raise IntegrityError(
                f"{what}: the artifact stored there is {manifest.service}@{manifest.version}"
            )
        return manifest

    async def _verify_signature(self, repo: str, digest: str, what: str) -> None:
        from lumi.packaging.signing import signature_tag

        assert self.verifier is not None
        data = await self.store.get_manifest(repo, signature_tag(digest))
        if data is None:
            raise SignatureError(f"{what} is not signed, and a trust key is configured")
        parsed = oci.parse_manifest(data, f"{what} signature")
        if not parsed.layers:
            raise SignatureError(f"{what}: the signature manifest has no payload")
        layer = parsed.layers[0]
        body = await self.store.get_blob(repo, layer.digest, layer.size)
        if body is None:
            raise SignatureError(f"{what}: the signature payload is missing")
        oci.verify(body, layer.digest, layer.size, f"{what} signature")
        signature = layer.annotations.get(oci.SIGNATURE_ANNOTATION, "")
        self.verifier.verify(repo, digest, body, signature, what)

    # --- writing ----------------------------------------------------------------------------

    async def push(self, artifact: Artifact, *, progress: Progress = no_progress) -> PushResult:
        """Publish ``artifact``; refuses (before writing anything) a version that exists with
        other content, or a repository that belongs to another service."""
        service, version = artifact.manifest.service, artifact.manifest.version
        repo, tag = self.repo(service), tag_of(version)
        existing = await self.store.get_manifest(repo, tag)
        created = existing is None
        if existing is not None:
            check_unchanged(artifact, oci.digest_of(existing), self.url)
        else:
            await self._check_owner(repo, service)
            blobs = {artifact.config.digest: artifact.config_bytes}
            blobs.update({layer.descriptor.digest: layer.data for layer in artifact.layers})
            for digest, data in blobs.items():
                if not await self.store.has_blob(repo, digest):  # layers shared by services
                    await self.store.put_blob(repo, digest, data, progress)
            try:
                await self.store.put_manifest(
                    repo, tag, artifact.manifest_bytes, oci.MANIFEST_MEDIA_TYPE, create=True
                )
            except TagTaken as taken:  # another push of this version got there first
                check_unchanged(artifact, taken.digest, self.url)
                created = False
        signed = False
        if self.signer is not None:
            await self._sign(repo, artifact.digest)
            signed = True
        return PushResult(artifact.ref, artifact.digest, created, signed)

    async def _check_owner(self, repo: str, service: str) -> None:
        versions = sort_versions([t.replace("_", "+") for t in await self.store.tags(repo)])
        if not versions:
            return
        data = await self.store.get_manifest(repo, tag_of(versions[-1]))
        owner = (
            oci.parse_manifest(data, repo).annotations.get(oci.SERVICE_ANNOTATION) if data else None
        )
        if owner and owner != service:
            raise ImmutableError(
                f"{self.url}: repository {repo} holds service {owner!r}, not {service!r} "
                f"(their names differ only in case or punctuation)"
            )

    async def _sign(self, repo: str, digest: str) -> None:
        from lumi.packaging.signing import signature_tag

        assert self.signer is not None
        body, signature = self.signer.sign(repo, digest)
        layer = oci.Descriptor.of(
            oci.SIGNATURE_MEDIA_TYPE, body, **{oci.SIGNATURE_ANNOTATION: signature}
        )
        config = oci.Descriptor.of(oci.SIGNATURE_CONFIG_MEDIA_TYPE, _EMPTY_CONFIG)
        await self.store.put_blob(repo, config.digest, _EMPTY_CONFIG)
        await self.store.put_blob(repo, layer.digest, body)
        manifest = oci.image_manifest(config, [layer])
        await self.store.put_manifest(
            repo, signature_tag(digest), manifest, oci.MANIFEST_MEDIA_TYPE
        )

    async def aclose(self) -> None:
        await self.store.aclose()

    async def __aenter__(self) -> Repository:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


DEFAULT_PATH = Path("~/.lumi/repository")


def open_repository(
    url: str | None = None,
    *,
    signing_key: str | Path | None = None,
    trust_key: str | Path | None = None,
    username: str | None = None,
    password: str | None = None,
) -> Repository:
    """A repository from a URL: a folder path or ``oci-layout:PATH`` (an OCI image layout;
    default ``~/.lumi/repository``), or ``http://host:port/namespace``, ``https://…`` or
    ``oci://host/namespace`` (an OCI registry)."""
    from lumi.packaging.store.layout import LayoutStore

    signer = verifier = None
    if signing_key or trust_key:
        signing = _optional("lumi.packaging.signing", "signatures")
        signer = signing.Signer.from_file(signing_key) if signing_key else None
        verifier = signing.Verifier.from_file(trust_key) if trust_key else None
    target = url or str(DEFAULT_PATH)
    if target.split("://", 1)[0] in ("http", "https", "oci") and "://" in target:
        RegistryStore = _optional("lumi.packaging.store.registry", "OCI registries").RegistryStore

        scheme, rest = target.split("://", 1)
        host, _, namespace = rest.partition("/")
        store: Store = RegistryStore(f"{scheme}://{host}", username=username, password=password)
        return Repository(store, namespace=namespace, signer=signer, verifier=verifier)
    path = target.removeprefix("oci-layout:")
    return Repository(LayoutStore(path), signer=signer, verifier=verifier)


def _optional(module: str, what: str) -> Any:
    """A module that needs the ``shipping`` extra; its absence is one line saying what to do."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise PackagingError(
            f"{what} need {exc.name or 'a missing package'}: pip install 'lumi-runtime[shipping]'"
        ) from None
