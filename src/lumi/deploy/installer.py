"""Each deployed version runs from its own installed artifact: a virtual environment built
with pip from the artifact's wheel and lock, never from a source tree.

The environment is layered over the control plane's own (``--system-site-packages``): pip
installs the artifact's wheel and every pin of its lock that the base does not already
satisfy exactly, so an artifact built on this machine costs one wheel install, and one built
against other versions gets them (from pip's configured index: ``PIP_INDEX_URL``,
``PIP_FIND_LINKS``, ``PIP_NO_INDEX`` are pip's own settings). ``--no-deps``: the lock is
already the whole closure, so pip installs exactly it.

Environments are cached by what they are made of — the wheel's and the lock's digests and the
interpreter — in ``$LUMI_DEPLOY_CACHE`` (default ``~/.lumi/deploy-cache``): the services of
one build share one, a rollback to an earlier version finds its environment ready, and two
versions of a service run side by side from two of them. A build happens in a temporary
folder renamed into place when complete, under a lock, so a half-built one is never used.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from lumi.deploy.errors import InstallError, RefusedError
from lumi.packaging import Artifact, oci

CACHE_VARIABLE = "LUMI_DEPLOY_CACHE"
DEFAULT_CACHE = Path("~/.lumi/deploy-cache")
PIP_TIMEOUT = 600.0
_MARKER = "lumi-artifact.json"


@dataclasses.dataclass(frozen=True)
class Installed:
    """An artifact's environment: its folder and interpreter; ``built`` if this call made it."""

    path: Path
    python: str
    built: bool


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_VARIABLE) or DEFAULT_CACHE).expanduser()


def check_python(artifact_ref: str, requires_python: str) -> None:
    """Refuse an artifact whose ``Requires-Python`` excludes the control plane's interpreter."""
    if not requires_python:
        return
    here = ".".join(str(n) for n in sys.version_info[:3])
    try:
        allowed = SpecifierSet(requires_python).contains(Version(here), prereleases=True)
    except InvalidSpecifier:
        raise RefusedError(
            f"{artifact_ref}: Requires-Python {requires_python!r} is not a version specifier"
        ) from None
    if not allowed:
        raise RefusedError(
            f"{artifact_ref} needs Python {requires_python}, and the control plane runs {here}"
        )


class Installer:
    """Builds (or finds) the environment of an artifact under ``root``."""

    def __init__(self, root: Path | None = None, *, python: str = sys.executable) -> None:
        self.root = root or cache_root()
        self.python = python

    def key(self, artifact: Artifact) -> str:
        wheel = artifact.layer(oci.WHEEL_MEDIA_TYPE).descriptor.digest
        lock = artifact.layer(oci.LOCK_MEDIA_TYPE).descriptor.digest
        made_of = f"{wheel}\n{lock}\n{sys.implementation.cache_tag}\n{self.python}"
        return hashlib.sha256(made_of.encode()).hexdigest()[:24]

    def find(self, artifact: Artifact) -> Installed | None:
        folder = self.root / self.key(artifact)
        if (folder / _MARKER).is_file():
            return Installed(folder, str(folder / "bin" / "python"), built=False)
        return None

    async def install(self, artifact: Artifact) -> Installed:
        """The artifact's environment, built now if no earlier deploy built it."""
        check_python(artifact.ref, artifact.manifest.requires_python)
        return await asyncio.to_thread(self._install, artifact)

    def _install(self, artifact: Artifact) -> Installed:
        found = self.find(artifact)
        if found is not None:
            return found
        self.root.mkdir(parents=True, exist_ok=True)
        key = self.key(artifact)
        with open(self.root / f".{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another deploy may be building the same one
            found = self.find(artifact)
            if found is not None:
                return found
            building = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=self.root))
            try:
                self._build(artifact, building)
                final = self.root / key
                shutil.rmtree(final, ignore_errors=True)
                os.replace(building, final)
            except BaseException:
                shutil.rmtree(building, ignore_errors=True)
                raise
        return Installed(final, str(final / "bin" / "python"), built=True)

    def _build(self, artifact: Artifact, folder: Path) -> None:
        venv = [self.python, "-m", "venv", "--system-site-packages", "--without-pip", str(folder)]
        self._run(venv, artifact, "creating its environment")
        files = folder / "artifact"
        files.mkdir()
        wheel = files / artifact.manifest.wheel
        wheel.write_bytes(artifact.layer(oci.WHEEL_MEDIA_TYPE).data)
        lock = files / "requirements.lock"
        lock.write_bytes(artifact.layer(oci.LOCK_MEDIA_TYPE).data)
        target = str(folder / "bin" / "python")
        pip = [self.python, "-m", "pip", "--python", target, "install", "--no-deps"]
        pip += ["--no-input", "--disable-pip-version-check", "--quiet"]
        pip += ["--requirement", str(lock), str(wheel)]
        self._run(pip, artifact, "pip install")
        manifest = artifact.manifest
        marker = {"service": manifest.service, "version": manifest.version}
        marker.update(digest=artifact.digest, wheel=manifest.wheel)
        (folder / _MARKER).write_text(json.dumps(marker, indent=2) + "\n")

    def _run(self, command: list[str], artifact: Artifact, what: str) -> None:
        environ = {k: v for k, v in os.environ.items() if k != "PIP_REQUIRE_VIRTUALENV"}
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, env=environ, timeout=PIP_TIMEOUT
            )
        except subprocess.TimeoutExpired:
            raise InstallError(f"{artifact.ref}: {what} took over {PIP_TIMEOUT:g}s") from None
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            cause = next((line for line in reversed(lines) if "ERROR" in line), None)
            cause = cause or (lines[-1] if lines else f"exit status {done.returncode}")
            raise InstallError(f"installing {artifact.ref} failed ({what}): {cause.strip()}")
