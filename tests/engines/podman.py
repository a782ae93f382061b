"""Real containers for tests: podman with a private store and a base image made by debootstrap.

No image registry is reachable from a test machine, so the base image is a Debian bookworm
rootfs (``debootstrap --variant=minbase --include=python3,python3-venv``) imported into podman.
The rootfs, the podman store (with its layer cache) and downloaded wheels live under
``~/.cache/lumi-test`` (``LUMI_TEST_CACHE``), so only the first run pays for them (~3 min).
podman is configured as ``../shared/INFRA.md`` says works here: runc, explicit ulimits, the
overlay driver with a private graph root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

CACHE = Path(os.environ.get("LUMI_TEST_CACHE") or Path.home() / ".cache" / "lumi-test")
BASE_IMAGE = "localhost/lumi-test-base:bookworm"

CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
"""


def podman_environment() -> dict[str, str]:
    """The variables pointing podman at the test configuration (written if missing)."""
    folder = CACHE / "podman"
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    storage = folder / "storage.conf"
    storage.write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{folder / "storage"}"\n'
        f'runroot = "{folder / "run"}"\n'
    )
    return {
        "CONTAINERS_CONF": str(conf),
        "CONTAINERS_STORAGE_CONF": str(storage),
        "LUMI_WHEEL_CACHE": str(CACHE / "wheels"),
    }


def _require(command: str) -> str:
    path = shutil.which(command)
    if path is None:
        raise AssertionError(f"{command} is missing: run scripts/test-deps (apt install {command})")
    return path


def ensure_base_image(environ: dict[str, str]) -> str:
    """The base image, imported from the cached debootstrap rootfs (made if missing)."""
    podman = _require("podman")
    exists = subprocess.run(
        [podman, "image", "exists", BASE_IMAGE], env=environ, check=False, capture_output=True
    )
    if exists.returncode == 0:
        return BASE_IMAGE
    rootfs = CACHE / "rootfs-bookworm"
    if not (rootfs / "usr" / "bin" / "python3").exists():
        debootstrap = _require("debootstrap")
        partial = CACHE / "rootfs-bookworm.tmp"
        shutil.rmtree(partial, ignore_errors=True)
        subprocess.run(
            [debootstrap, "--variant=minbase", "--include=python3,python3-venv", "bookworm",
             str(partial), "http://deb.debian.org/debian"],
            check=True, capture_output=True, timeout=1200,
        )  # fmt: skip
        partial.rename(rootfs)
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(
        [podman, "import", "-", BASE_IMAGE],
        stdin=tar.stdout,
        env=environ,
        check=True,
        capture_output=True,
        timeout=600,
    )
    tar.wait()
    return BASE_IMAGE


@pytest.fixture(scope="session")
def podman_env() -> Iterator[dict[str, str]]:
    """podman configured for tests (in this process's environment too) and the base image
    present; the environment to give subprocesses."""
    environ = podman_environment()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in environ.items():
            patch.setenv(key, value)
        ensure_base_image({**os.environ})
        yield {**os.environ}


def containers_of(label: str, environ: dict[str, str]) -> list[str]:
    """Ids of the containers (running or not) carrying ``label`` (``key=value``)."""
    done = subprocess.run(
        ["podman", "ps", "--all", "--quiet", "--filter", f"label={label}"],
        env=environ,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.split()


if __name__ == "__main__":  # scripts/test-deps: make the base image before the tests need it
    print(
        f"test-deps: container base image {ensure_base_image({**os.environ, **podman_environment()})}"
    )
