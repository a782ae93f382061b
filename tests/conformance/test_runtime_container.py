"""The runtime contract on the container runtime: the echo app's replicas in podman containers
of images built by ``lumi build image`` from a debootstrap base."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lumi.runtimes.base import Runtime
from lumi.runtimes.container import ContainerRuntime
from lumi.runtimes.engine import images_file
from lumi.targets.image import build_images
from tests.conformance.runtime_contract import ECHO_APP, RuntimeContract
from tests.engines.podman import BASE_IMAGE
from tests.integration.harness import copy_app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def echo_images(podman_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The echo app with an image per service built by lumi build image; its images.json."""
    app = copy_app(ECHO_APP, tmp_path_factory.mktemp("images") / "echo")
    build_images(app, base=BASE_IMAGE)
    return images_file(app)


class TestContainerRuntime(RuntimeContract):
    @pytest.fixture
    def app_dir(self, tmp_path: Path, echo_images: Path) -> Path:
        app = copy_app(ECHO_APP, tmp_path / "echo")
        (app / ".lumi").mkdir()
        shutil.copy(echo_images, app / ".lumi" / echo_images.name)
        return app

    @pytest.fixture
    def runtime(self, tmp_path: Path) -> Runtime:
        # The contract's marks file lives in tmp_path: the same path inside the container.
        return ContainerRuntime(
            pass_environment=["ECHO_MARKS"], volumes={str(tmp_path): str(tmp_path)}
        )
