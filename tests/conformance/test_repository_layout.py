"""The repository contract on the embedded OCI image-layout store, plus what only it has."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import oras.layout
import pytest

from lumi.packaging.repository import Repository, open_repository
from lumi.packaging.store.layout import LayoutStore
from tests.conformance.repository_contract import (
    OpenRepo,
    RepositoryContract,
    Tamper,
    make_artifact,
)


class TestLayoutRepository(RepositoryContract):
    @pytest.fixture
    def open_repo(self, tmp_path: Path) -> OpenRepo:
        """Repositories over one fresh layout directory."""
        return lambda **kw: Repository(LayoutStore(tmp_path / "repo"), **kw)

    @pytest.fixture
    def tamper(self, tmp_path: Path) -> Tamper:
        """Rewrite a blob file in the layout."""

        def rewrite(digest: str, change: Callable[[bytes], bytes]) -> None:
            path = tmp_path / "repo" / "blobs" / "sha256" / digest.removeprefix("sha256:")
            path.write_bytes(change(path.read_bytes()))

        return rewrite


async def test_the_layout_is_a_valid_oci_image_layout(tmp_path: Path) -> None:
    """oras' own layout validator accepts the directory and finds every blob of a tag."""
    repo = open_repository(str(tmp_path / "repo"))
    artifact = make_artifact()
    await repo.push(artifact)
    layout = oras.layout.Layout(str(tmp_path / "repo"), validate=True)
    blobs = set(layout.get_ordered_blobs("inventory:1.0.0"))
    expected = {artifact.digest, artifact.config.digest}
    expected |= {layer.descriptor.digest for layer in artifact.layers}
    assert blobs == expected


async def test_open_repository_takes_paths_and_oci_layout_urls(tmp_path: Path) -> None:
    """A bare path and ``oci-layout:PATH`` name the same embedded repository."""
    await open_repository(f"oci-layout:{tmp_path / 'r'}").push(make_artifact())
    assert await open_repository(str(tmp_path / "r")).versions("Inventory") == ["1.0.0"]
