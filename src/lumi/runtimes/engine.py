"""Container engines (podman, docker, buildah) and the images ``lumi build image`` made.

:func:`find_engine` picks the first engine that is installed *and* works here (``docker``
without a reachable daemon does not count), or the one ``LUMI_CONTAINER_ENGINE`` names; when
there is none, one line says what to install. Built images are recorded in
``<app>/.lumi/images.json`` (service → reference and image id), which the container runtime and
``lumi deploy`` read, so what runs is what was built.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from pathlib import Path

import pydantic

from lumi.model.errors import AppError
from lumi.paths import AppPaths, private_dir

ENGINE_VARIABLE = "LUMI_CONTAINER_ENGINE"
_RUNNERS = ("podman", "docker")
_BUILDERS = ("podman", "buildah", "docker")


class EngineMissing(AppError):
    """No usable container engine here."""


@dataclasses.dataclass(frozen=True)
class Engine:
    """One container engine's command line."""

    name: str  # podman | docker | buildah
    path: str

    def command(self, *args: str) -> list[str]:
        return [self.path, *args]

    def build_command(
        self, containerfile: Path, context: Path, tag: str, target: str, iidfile: Path
    ) -> list[str]:
        """The command building stage ``target`` of ``containerfile`` as ``tag``."""
        head = [self.path, "bud" if self.name == "buildah" else "build"]
        # docker format: the OCI image format has no HEALTHCHECK
        fmt = [] if self.name == "docker" else ["--format", "docker"]
        return [
            *head,
            *fmt,
            "--file",
            str(containerfile),
            "--target",
            target,
            "--tag",
            tag,
            "--iidfile",
            str(iidfile),
            str(context),
        ]


def _works(name: str, path: str) -> bool:
    if name != "docker":
        return True
    try:  # the docker CLI is often installed without a daemon to talk to
        done = subprocess.run(
            [path, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def find_engine(purpose: str = "run") -> Engine:
    """The engine to ``run`` containers or ``build`` images with; EngineMissing if none."""
    candidates: tuple[str, ...] = _RUNNERS if purpose == "run" else _BUILDERS
    forced = os.environ.get(ENGINE_VARIABLE)
    if forced:
        if forced not in candidates:
            raise EngineMissing(
                f"{ENGINE_VARIABLE}={forced} cannot {purpose} containers "
                f"(use one of: {', '.join(candidates)})"
            )
        candidates = (forced,)
    tried = []
    for name in candidates:
        path = shutil.which(name)
        if path is None:
            continue
        if _works(name, path):
            return Engine(name, path)
        tried.append(f"{name} (installed, but its daemon does not answer)")
    found = f"; found {', '.join(tried)}" if tried else ""
    raise EngineMissing(
        f"no container engine to {purpose} with{found}: install podman "
        f"(apt install podman{' buildah' if purpose == 'build' else ''}) or docker"
    )


class ImageRecord(pydantic.BaseModel):
    """One built image."""

    ref: str  # localhost/shop-inventory:0.1.0
    id: str  # sha256:...
    engine: str
    base: str


def images_file(app_dir: Path) -> Path:
    return AppPaths(app_dir).state / "images.json"


def read_images(app_dir: Path) -> dict[str, ImageRecord]:
    """The images built for the app in ``app_dir`` (empty if none were)."""
    path = images_file(app_dir)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise AppError(f"cannot read {path}: {exc}") from None
    try:
        return {name: ImageRecord.model_validate(item) for name, item in data.items()}
    except (AttributeError, pydantic.ValidationError) as exc:
        raise AppError(f"{path} is damaged ({exc}); rebuild with lumi build image") from None


def record_images(app_dir: Path, images: dict[str, ImageRecord]) -> None:
    """Add (or replace) ``images`` in the app's record."""
    merged = {**read_images(app_dir), **images}
    path = images_file(app_dir)
    private_dir(path.parent)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({n: r.model_dump() for n, r in sorted(merged.items())}, indent=2))
    os.replace(tmp, path)


def image_of(app_dir: Path, service: str) -> ImageRecord:
    """The image built for ``service``; AppError saying how to build it otherwise."""
    found = read_images(app_dir).get(service)
    if found is None:
        raise AppError(
            f"{service} runs in a container, but no image was built for it: "
            f"lumi build image {service} --app {app_dir}"
        )
    return found
