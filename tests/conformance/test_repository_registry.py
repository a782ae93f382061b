"""The repository contract on a real OCI registry (Debian's docker-registry, basic auth),
plus credentials and interop with the ``oras`` client."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import oras.provider
import pytest

from lumi.packaging import oci
from lumi.packaging.errors import AuthError, RepositoryError
from lumi.packaging.repository import Repository, open_repository
from lumi.packaging.store.registry import RegistryStore
from tests.conformance.repository_contract import (
    OpenRepo,
    RepositoryContract,
    Tamper,
    make_artifact,
)
from tests.registry import PASSWORD, USER, Registry
from tests.servers import free_port


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    """One registry for the module; each test uses its own namespace."""
    server = Registry()
    yield server
    server.stop()


class TestRegistryRepository(RepositoryContract):
    @pytest.fixture
    def open_repo(self, registry: Registry) -> OpenRepo:
        """Repositories in a fresh namespace of the registry, logged in with basic auth."""
        namespace = f"t{uuid.uuid4().hex[:12]}"
        store = lambda: RegistryStore(registry.url, username=USER, password=PASSWORD)  # noqa: E731
        return lambda **kw: Repository(store(), namespace=namespace, **kw)

    @pytest.fixture
    def tamper(self, registry: Registry) -> Iterator[Tamper]:
        """Rewrite a blob in the registry's filesystem storage (blobs are shared by every
        namespace, so the originals are put back afterwards)."""
        originals: dict[Path, bytes] = {}

        def rewrite(digest: str, change: Callable[[bytes], bytes]) -> None:
            path = registry.blob_path(digest)
            originals.setdefault(path, path.read_bytes())
            path.write_bytes(change(path.read_bytes()))

        yield rewrite
        for path, data in originals.items():
            path.write_bytes(data)


async def test_a_wrong_password_is_one_line_and_pushes_nothing(registry: Registry) -> None:
    """HTTP 401 becomes an AuthError naming the user; the namespace stays empty."""
    bad = Repository(RegistryStore(registry.url, username=USER, password="wrong"), namespace="bad")
    with pytest.raises(AuthError) as caught:
        await bad.push(make_artifact())
    assert str(caught.value) == (
        f"registry {registry.url} refused the password of user 'lumi' (HTTP 401)"
    )
    good = Repository(
        RegistryStore(registry.url, username=USER, password=PASSWORD), namespace="bad"
    )
    assert await good.versions("Inventory") == []


async def test_no_credentials_says_how_to_log_in(
    registry: Registry, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without credentials the error names the variables to set."""
    for name in ("LUMI_REGISTRY_USERNAME", "LUMI_REGISTRY_PASSWORD", "REGISTRY_AUTH_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(AuthError, match="requires a login: set LUMI_REGISTRY_USERNAME"):
        await open_repository(f"{registry.url}/anon").versions("Inventory")


async def test_credentials_come_from_the_environment(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LUMI_REGISTRY_USERNAME/PASSWORD log in."""
    monkeypatch.setenv("LUMI_REGISTRY_USERNAME", USER)
    monkeypatch.setenv("LUMI_REGISTRY_PASSWORD", PASSWORD)
    repo = open_repository(f"{registry.url}/envauth")
    await repo.push(make_artifact())
    assert await repo.versions("Inventory") == ["1.0.0"]


async def test_credentials_come_from_a_docker_auth_file(
    registry: Registry, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A docker-style config.json ``auths`` entry for the host logs in."""
    for name in ("LUMI_REGISTRY_USERNAME", "LUMI_REGISTRY_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"auths": {registry.host: {"auth": token}}}))
    monkeypatch.setenv("LUMI_REGISTRY_AUTH_FILE", str(auth))
    repo = open_repository(f"{registry.url}/fileauth")
    await repo.push(make_artifact())
    assert await repo.services() == ["Inventory"]


async def test_a_stopped_registry_fails_at_once() -> None:
    """Connection refused is one line, without oras' retry sleeps."""
    repo = open_repository(f"http://127.0.0.1:{free_port()}/x", username="u", password="p")
    with pytest.raises(RepositoryError, match="cannot reach the registry .*connection refused"):
        await repo.versions("Inventory")


def test_the_oras_client_pulls_what_lumi_pushed(registry: Registry, tmp_path: Path) -> None:
    """An independent client (oras-py's pull) downloads the layers by their titles, intact."""
    repo = Repository(RegistryStore(registry.url, username=USER, password=PASSWORD),
                      namespace="interop")  # fmt: skip
    artifact = make_artifact(wheel=b"the wheel" * 100)
    asyncio.run(repo.push(artifact))
    client = oras.provider.Registry(hostname=registry.host, insecure=True, auth_backend="basic")
    client.auth.set_basic_auth(USER, PASSWORD)
    files = client.pull(target=f"{registry.host}/interop/inventory:1.0.0", outdir=str(tmp_path))
    names = {Path(f).name: Path(f).read_bytes() for f in files}
    assert names["shop-0.1.0-py3-none-any.whl"] == b"the wheel" * 100
    manifest = client.get_manifest(f"{registry.host}/interop/inventory:1.0.0")
    assert manifest["artifactType"] == oci.ARTIFACT_TYPE
    assert manifest["annotations"][oci.SERVICE_ANNOTATION] == "Inventory"
