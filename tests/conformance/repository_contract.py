"""The artifact-repository contract, written once: each store's test module subclasses
:class:`RepositoryContract` and provides two fixtures — ``open_repo`` (a factory of
:class:`Repository` objects over one fresh, empty store, taking ``signer``/``verifier``) and
``tamper`` (rewrites a stored blob's bytes in place, as an attacker with disk access would).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lumi.packaging import oci
from lumi.packaging.artifact import Artifact, ArtifactManifest, Bindings, Provenance
from lumi.packaging.errors import (
    ImmutableError,
    IntegrityError,
    NotFoundError,
    SignatureError,
)
from lumi.packaging.repository import Repository
from lumi.packaging.signing import Signer, Verifier, generate_keypair

OpenRepo = Callable[..., Repository]
Tamper = Callable[[str, Callable[[bytes], bytes]], None]


def make_artifact(
    service: str = "Inventory",
    version: str = "1.0.0",
    *,
    wheel: bytes = b"PK-wheel-bytes",
    requires: dict[str, str] | None = None,
    note: str = "",
) -> Artifact:
    """A small but complete artifact (no build needed): ``note`` changes its content."""
    interface: dict[str, Any] = {
        "format": 1, "name": service, "version": version, "doc": note, "methods": {},
        "events": {}, "subscriptions": [], "requires": sorted(requires or {}), "$defs": {},
    }  # fmt: skip
    manifest = ArtifactManifest(
        app="shop",
        service=service,
        version=version,
        entry=f"shop.x:{service}",
        interface=interface,
        fingerprint=oci.digest_of(oci.canonical_json(interface)),
        requires=requires or {},
        bindings=Bindings(rpc=["http"], events="embedded", runtime="process"),
        wheel="shop-0.1.0-py3-none-any.whl",
        provenance=Provenance(
            builder="lumi test", created="2026-01-01T00:00:00Z", source_date_epoch=1767225600
        ),
    )
    files = [
        (oci.WHEEL_MEDIA_TYPE, "shop-0.1.0-py3-none-any.whl", wheel),
        (oci.LOCK_MEDIA_TYPE, "requirements.lock", b"pydantic==2.7.0\n"),
        (oci.CLIENTS_MEDIA_TYPE, "clients.tar.gz", oci.reproducible_targz({"a.py": b"x"}, 0)),
    ]
    return Artifact.create(manifest, files)


class RepositoryContract:
    """What every store must do, seen through :class:`Repository`."""

    @pytest.fixture(scope="class")
    @classmethod
    def keys(cls, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
        """Two key pairs: the trusted one and a stranger's."""
        out = {}
        for name in ("trusted", "stranger"):
            private, public = generate_keypair(tmp_path_factory.mktemp(name))
            out[f"{name}.key"], out[f"{name}.pub"] = private, public
        return out

    async def test_push_then_pull_round_trips_every_byte(self, open_repo: OpenRepo) -> None:
        """A pushed artifact comes back with the same digest, config and layers."""
        repo = open_repo()
        artifact = make_artifact()
        result = await repo.push(artifact)
        assert result.created and result.digest == artifact.digest
        pulled = await repo.pull("Inventory", "1.0.0")
        assert pulled.digest == artifact.digest
        assert pulled.manifest == artifact.manifest
        assert [layer.data for layer in pulled.layers] == [layer.data for layer in artifact.layers]

    async def test_manifest_reads_the_config_without_layers(self, open_repo: OpenRepo) -> None:
        """``manifest`` gives service, version, digest, interface and total size."""
        repo = open_repo()
        artifact = make_artifact(requires={"Catalog": "^1.2"})
        await repo.push(artifact)
        published = await repo.manifest("Inventory", "1.0.0")
        assert (published.service, published.version) == ("Inventory", "1.0.0")
        assert published.digest == artifact.digest
        assert published.manifest.requires == {"Catalog": "^1.2"}
        assert published.size == artifact.size

    async def test_versions_are_semver_ordered_and_latest_is_newest(
        self, open_repo: OpenRepo
    ) -> None:
        """1.10.0 sorts after 1.2.0; ``latest(before=)`` finds the previous release."""
        repo = open_repo()
        for version in ("1.2.0", "1.10.0", "1.9.1"):
            await repo.push(make_artifact(version=version))
        assert await repo.versions("Inventory") == ["1.2.0", "1.9.1", "1.10.0"]
        assert await repo.latest("Inventory") == "1.10.0"
        assert await repo.latest("Inventory", before="1.10.0") == "1.9.1"
        assert await repo.versions("Nothing") == []
        assert (await repo.pull("Inventory")).manifest.version == "1.10.0"

    async def test_services_lists_names_as_written(self, open_repo: OpenRepo) -> None:
        """Service names keep their case although OCI repository names are lowercase."""
        repo = open_repo()
        await repo.push(make_artifact("OrderHistory"))
        await repo.push(make_artifact("Inventory"))
        assert await repo.services() == ["Inventory", "OrderHistory"]

    async def test_pushing_the_same_content_again_changes_nothing(
        self, open_repo: OpenRepo
    ) -> None:
        """Re-publishing identical bytes is a no-op reported as not created."""
        repo = open_repo()
        artifact = make_artifact()
        await repo.push(artifact)
        again = await repo.push(make_artifact())
        assert not again.created and again.digest == artifact.digest
        assert await repo.versions("Inventory") == ["1.0.0"]

    async def test_a_published_version_is_immutable(self, open_repo: OpenRepo) -> None:
        """Other content under an existing version is refused in one line; the old stays."""
        repo = open_repo()
        original = make_artifact()
        await repo.push(original)
        with pytest.raises(ImmutableError) as caught:
            await repo.push(make_artifact(note="changed"))
        message = str(caught.value)
        assert "\n" not in message and "already published" in message and "bump" in message
        assert (await repo.pull("Inventory", "1.0.0")).digest == original.digest

    async def test_a_missing_version_names_the_published_ones(self, open_repo: OpenRepo) -> None:
        """Pulling an unknown version says which versions exist."""
        repo = open_repo()
        await repo.push(make_artifact(version="1.0.0"))
        with pytest.raises(NotFoundError, match=r"no Inventory@2\.0\.0 .*versions: 1\.0\.0"):
            await repo.pull("Inventory", "2.0.0")
        with pytest.raises(NotFoundError, match="no version of Nothing"):
            await repo.manifest("Nothing")

    async def test_pull_by_digest_checks_the_digest(self, open_repo: OpenRepo) -> None:
        """A digest reference returns exactly that manifest, or nothing."""
        repo = open_repo()
        artifact = make_artifact()
        await repo.push(artifact)
        assert (await repo.pull("Inventory", artifact.digest)).digest == artifact.digest
        with pytest.raises(NotFoundError):
            await repo.pull("Inventory", oci.digest_of(b"some other manifest"))

    async def test_a_tampered_layer_is_refused(self, open_repo: OpenRepo, tamper: Tamper) -> None:
        """A layer whose stored bytes changed fails the digest check on pull."""
        repo = open_repo()
        artifact = make_artifact(wheel=b"W" * 4096)
        await repo.push(artifact)
        wheel = artifact.layer(oci.WHEEL_MEDIA_TYPE).descriptor
        tamper(wheel.digest, lambda data: b"X" + data[1:])
        with pytest.raises(IntegrityError, match="does not match its digest"):
            await repo.pull("Inventory", "1.0.0")

    async def test_a_swollen_layer_is_refused(self, open_repo: OpenRepo, tamper: Tamper) -> None:
        """A layer that grew is refused (and never read much past its declared size)."""
        repo = open_repo()
        artifact = make_artifact(wheel=b"W" * 4096)
        await repo.push(artifact)
        tamper(artifact.layer(oci.WHEEL_MEDIA_TYPE).descriptor.digest, lambda d: d * 64)
        with pytest.raises(IntegrityError, match="4097 bytes"):
            await repo.pull("Inventory", "1.0.0")

    async def test_a_tampered_config_is_refused_by_manifest(
        self, open_repo: OpenRepo, tamper: Tamper
    ) -> None:
        """``manifest`` verifies the config blob too."""
        repo = open_repo()
        artifact = make_artifact()
        await repo.push(artifact)
        tamper(artifact.config.digest, lambda data: data.replace(b"1.0.0", b"6.6.6"))
        with pytest.raises(IntegrityError):
            await repo.manifest("Inventory", "1.0.0")

    async def test_shared_layers_serve_every_service(self, open_repo: OpenRepo) -> None:
        """Two services with the same wheel both pull it intact."""
        repo = open_repo()
        await repo.push(make_artifact("Inventory", wheel=b"shared"))
        await repo.push(make_artifact("Catalog", wheel=b"shared"))
        for service in ("Inventory", "Catalog"):
            pulled = await repo.pull(service, "1.0.0")
            assert pulled.layer(oci.WHEEL_MEDIA_TYPE).data == b"shared"

    async def test_progress_sees_every_byte(self, open_repo: OpenRepo) -> None:
        """Upload and download bars add up to the artifact's blob bytes."""
        repo = open_repo()
        artifact = make_artifact(wheel=b"w" * 300_000)
        counted: dict[str, list[int]] = {}

        def progress(description: str, total: int) -> Callable[[int], None]:
            counted[description] = [total, 0]
            return lambda n: counted[description].__setitem__(1, counted[description][1] + n)

        await repo.push(artifact, progress=progress)
        blob_bytes = artifact.size - len(artifact.manifest_bytes)
        assert sum(total for total, _ in counted.values()) == blob_bytes
        assert all(total == done for total, done in counted.values())
        counted.clear()
        await repo.push(make_artifact(version="1.0.1", wheel=b"w" * 300_000), progress=progress)
        assert sum(total for total, _ in counted.values()) < 300_000  # the wheel is not resent
        counted.clear()
        await repo.pull("Inventory", "1.0.0", progress=progress)
        assert sum(done for _, done in counted.values()) == blob_bytes

    async def test_concurrent_pushes_keep_every_version(self, open_repo: OpenRepo) -> None:
        """Eight versions pushed at once through two clients are all listed afterwards."""
        first, second = open_repo(), open_repo()
        versions = [f"1.{i}.0" for i in range(8)]
        await asyncio.gather(
            *(
                (first if i % 2 else second).push(make_artifact(version=v))
                for i, v in enumerate(versions)
            )
        )
        assert await first.versions("Inventory") == versions

    async def test_two_pushes_of_one_version_race_and_one_wins(self, open_repo: OpenRepo) -> None:
        """Two clients push different content as one version at the same moment, many times:
        each time exactly one push publishes and the other is refused as immutable; the
        version then holds the winner's bytes (a check-then-write would let both "win"). A
        store without atomic tags (an OCI registry) only promises the version holds one of
        them; its docs say how to make the registry enforce it."""
        for round_ in range(6):
            version = f"2.{round_}.0"
            first, second = open_repo(), open_repo()
            pushed = [make_artifact(version=version, note=n) for n in ("a", "b")]
            results = await asyncio.gather(
                first.push(pushed[0]), second.push(pushed[1]), return_exceptions=True
            )
            won = [a for a, r in zip(pushed, results, strict=True) if not isinstance(r, Exception)]
            lost = [r for r in results if isinstance(r, Exception)]
            assert all(isinstance(r, ImmutableError) for r in lost), results
            final = (await first.pull("Inventory", version)).digest
            if first.store.atomic_tags:
                assert len(won) == 1 and len(lost) == 1, results
                assert final == won[0].digest
            else:  # no compare-and-set on the wire: at least the version holds one of the two
                assert won and final in {a.digest for a in pushed}

    async def test_signed_artifacts_verify_with_the_trust_key(
        self, open_repo: OpenRepo, keys: dict[str, Path]
    ) -> None:
        """With a signer on push and the matching trust key on pull, pull succeeds; signature
        tags are not versions."""
        signer = Signer.from_file(keys["trusted.key"])
        result = await open_repo(signer=signer).push(make_artifact())
        assert result.signed
        reader = open_repo(verifier=Verifier.from_file(keys["trusted.pub"]))
        assert (await reader.pull("Inventory", "1.0.0")).digest == result.digest
        assert await reader.versions("Inventory") == ["1.0.0"]

    async def test_unsigned_artifacts_are_refused_with_a_trust_key(
        self, open_repo: OpenRepo, keys: dict[str, Path]
    ) -> None:
        """A trust key makes signatures mandatory."""
        await open_repo().push(make_artifact())
        reader = open_repo(verifier=Verifier.from_file(keys["trusted.pub"]))
        with pytest.raises(SignatureError, match="not signed"):
            await reader.pull("Inventory", "1.0.0")

    async def test_a_strangers_signature_is_refused(
        self, open_repo: OpenRepo, keys: dict[str, Path]
    ) -> None:
        """A signature made with another key does not verify."""
        await open_repo(signer=Signer.from_file(keys["stranger.key"])).push(make_artifact())
        reader = open_repo(verifier=Verifier.from_file(keys["trusted.pub"]))
        with pytest.raises(SignatureError, match="does not verify"):
            await reader.manifest("Inventory", "1.0.0")

    async def test_a_signature_moved_to_another_artifact_is_refused(
        self, open_repo: OpenRepo, keys: dict[str, Path]
    ) -> None:
        """A valid signature of artifact A placed at artifact B's signature tag is refused."""
        signer = Signer.from_file(keys["trusted.key"])
        writer = open_repo(signer=signer)
        signed = await writer.push(make_artifact(version="1.0.0"))
        unsigned = await open_repo().push(make_artifact(version="1.1.0"))
        repo = writer.repo("Inventory")
        data = await writer.store.get_manifest(repo, signed.digest.replace(":", "-") + ".sig")
        assert data is not None
        await writer.store.put_manifest(
            repo, unsigned.digest.replace(":", "-") + ".sig", data, oci.MANIFEST_MEDIA_TYPE
        )
        reader = open_repo(verifier=Verifier.from_file(keys["trusted.pub"]))
        with pytest.raises(SignatureError, match="not this artifact"):
            await reader.pull("Inventory", "1.1.0")
