"""An artifact's environment: keyed by what it is made of, built by pip, refused in one line."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from shop.catalog import Catalog
from shop.inventory import Inventory

from lumi.deploy.errors import InstallError, RefusedError
from lumi.deploy.installer import Installer, check_python
from lumi.packaging import Artifact, oci
from tests.packaging_kit import client_artifact

pytestmark = pytest.mark.slow


def with_wheel(artifact: Artifact, wheel: bytes) -> Artifact:
    """``artifact`` with other wheel bytes (same manifest)."""
    files = [(layer.descriptor.media_type, layer.descriptor.title or "", layer.data)
             for layer in artifact.layers]  # fmt: skip
    files[0] = (oci.WHEEL_MEDIA_TYPE, files[0][1], wheel)
    return Artifact.create(artifact.manifest, files)


def test_services_of_one_build_share_an_environment(tmp_path: Path) -> None:
    """Same wheel and lock: one key, whatever the service or version; another wheel: another."""
    installer = Installer(tmp_path)
    catalog, inventory = client_artifact(Catalog, "1.0.0"), client_artifact(Inventory, "2.0.0")
    assert installer.key(catalog) == installer.key(inventory)
    assert installer.key(with_wheel(catalog, b"other")) != installer.key(catalog)
    assert installer.find(catalog) is None


def test_requires_python_is_checked_before_anything_is_built() -> None:
    """An artifact for another Python is refused, naming both."""
    here = ".".join(str(n) for n in sys.version_info[:3])
    check_python("Catalog@1.0.0", f">={sys.version_info[0]}.{sys.version_info[1]}")
    with pytest.raises(RefusedError) as caught:
        check_python("Catalog@1.0.0", ">=4")
    assert str(caught.value) == f"Catalog@1.0.0 needs Python >=4, and the control plane runs {here}"


def test_a_wheel_pip_cannot_install_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    """pip's own error, one line; no environment (or half of one) is left in the cache."""
    installer = Installer(tmp_path)
    broken = client_artifact(Catalog, "1.0.0")  # its "wheel" is a few bytes of text
    with pytest.raises(InstallError) as caught:
        asyncio.run(installer.install(broken))
    message = str(caught.value)
    assert message.startswith("installing Catalog@1.0.0 failed (pip install): ")
    assert "\n" not in message and "team-1.0.0-py3-none-any.whl" in message
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == []
