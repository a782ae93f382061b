"""The locked dependencies an image or a Lambda zip carries, as wheels for its interpreter.

The pins are the app's ``requirements.lock`` when it has one (``lumi build lock`` writes it),
else the versions installed here of what Lumi needs for the backends the app's config selects,
plus the app's own ``[project] dependencies`` or ``requirements.txt``, followed transitively.
Lumi itself is not among them: the artifact carries the very Lumi that builds it.

Wheels come from ``pip download`` for the *target* interpreter (its Python version, machine and
glibc), into a cache shared by every build, so a rebuild with the same pins downloads nothing.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from lumi.backends import BROKERS, RUNTIMES, TRANSPORTS, Backend
from lumi.config import AppConfig
from lumi.model.errors import AppError

DISTRIBUTION = "lumi-runtime"
LOCK_FILE = "requirements.lock"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")

Step = Callable[[str], None]


class BuildError(AppError):
    """A build that cannot go on; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class PythonTarget:
    """The interpreter an artifact will run on."""

    version: str  # "3.11"
    machine: str  # "x86_64" | "aarch64"
    glibc: str  # "2.36"

    @property
    def key(self) -> str:
        return f"cp{self.version.replace('.', '')}-{self.machine}-glibc{self.glibc}"

    def pip_arguments(self) -> list[str]:
        """``pip download`` options selecting wheels this interpreter can install."""
        minor = int(self.glibc.split(".")[1])
        platforms = [
            *(f"manylinux_2_{n}_{self.machine}" for n in range(minor, 4, -1)),
            f"manylinux2014_{self.machine}",
            f"manylinux2010_{self.machine}",
            f"manylinux1_{self.machine}",
        ]
        args = ["--python-version", self.version, "--implementation", "cp", "--only-binary=:all:"]
        for platform in platforms:
            args += ["--platform", platform]
        return args


def lumi_requirements(config: AppConfig) -> list[str]:
    """``lumi-runtime`` plus the extras of every backend the config (any environment) uses."""
    extras: set[str] = set()
    bindings = [config.defaults, *(config.binding(name) for name in config.services)]
    for binding in bindings:
        for name in binding.rpc or []:
            extras |= _extra(TRANSPORTS.builtins, name)
        if binding.events:
            scheme = binding.events.split("://", 1)[0].split("?", 1)[0]
            extras |= _extra(BROKERS.builtins, scheme)
        if binding.runtime:
            extras |= _extra(RUNTIMES.builtins, binding.runtime)
    suffix = f"[{','.join(sorted(extras))}]" if extras else ""
    return [f"{DISTRIBUTION}{suffix}"]


def _extra(builtins: Mapping[str, Backend], name: str) -> set[str]:
    backend = builtins.get(name)
    return {backend.extra} if backend is not None and backend.extra else set()


def app_requirements(root: Path) -> list[str]:
    """The app's own dependencies: ``[project] dependencies`` or ``requirements.txt``."""
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        project = tomllib.loads(pyproject.read_text()).get("project", {})
        return [str(r) for r in project.get("dependencies", [])]
    requirements = root / "requirements.txt"
    if requirements.is_file():
        lines = (line.split("#", 1)[0].strip() for line in requirements.read_text().splitlines())
        return [line for line in lines if line and not line.startswith("-")]
    return []


def pins_for(config: AppConfig) -> dict[str, str]:
    """Canonical name → exact version of everything the app needs besides Lumi itself."""
    lock = config.root / LOCK_FILE
    if lock.is_file():
        pins = read_lock(lock)
    else:
        pins = pin_installed([*lumi_requirements(config), *app_requirements(config.root)])
    own = {canonicalize_name(DISTRIBUTION), canonicalize_name(config.name)}
    return {name: version for name, version in pins.items() if name not in own}


def read_lock(path: Path) -> dict[str, str]:
    """The ``name==version`` lines of a lock file (comments and blank lines allowed)."""
    pins: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _PIN.match(line)
        if not match:
            raise BuildError(f"{path}:{number}: {line!r} is not 'name==version'")
        pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def pin_installed(requires: Iterable[str]) -> dict[str, str]:
    """Pin ``requires`` and what they require, transitively, to the versions installed here
    (markers evaluated for this interpreter, extras followed)."""
    pins: dict[str, str] = {}
    extras_of: dict[str, set[str]] = {}
    queue = [(_requirement(text), frozenset({""})) for text in requires]
    while queue:
        req, active = queue.pop()
        if req.marker is not None and not any(
            req.marker.evaluate({"extra": extra}) for extra in active
        ):
            continue
        name = canonicalize_name(req.name)
        try:
            dist = importlib.metadata.distribution(req.name)
        except importlib.metadata.PackageNotFoundError:
            raise BuildError(
                f"{req} is needed but not installed here, so it cannot be pinned: install it, "
                f"or write {LOCK_FILE} in the app folder"
            ) from None
        if name in pins and set(req.extras) <= extras_of[name]:
            continue
        pins[name] = dist.version
        extras_of.setdefault(name, set()).update(req.extras)
        followed = frozenset({"", *extras_of[name]})
        queue += [(_requirement(text), followed) for text in dist.requires or ()]
    return dict(sorted(pins.items()))


def _requirement(text: str) -> Requirement:
    try:
        return Requirement(text)
    except InvalidRequirement as exc:
        raise BuildError(f"bad requirement {text!r}: {exc}") from None


def wheelhouse(pins: dict[str, str], target: PythonTarget, cache: Path, step: Step) -> list[Path]:
    """A wheel for every pin, for ``target``: from the cache, downloading what is missing."""
    folder = cache / target.key
    folder.mkdir(parents=True, exist_ok=True)
    pins = {name: _normal(version) for name, version in pins.items()}
    have = _cached(folder)
    missing = [
        f"{name}=={version}" for name, version in pins.items() if (name, version) not in have
    ]
    if missing:
        step(f"downloading {len(missing)} wheel(s) for Python {target.version} {target.machine}")
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--disable-pip-version-check",
            "--dest",
            str(folder),
            *target.pip_arguments(),
            *missing,
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            detail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise BuildError(
                f"pip could not download wheels for Python {target.version} on "
                f"{target.machine}: {detail}"
            )
        have = _cached(folder)
    absent = [f"{n}=={v}" for n, v in pins.items() if (n, v) not in have]
    if absent:
        raise BuildError(f"no wheel for Python {target.version}: {', '.join(absent)}")
    return sorted(have[(name, version)] for name, version in pins.items())


def _normal(version: str) -> str:
    try:
        return str(Version(version))
    except InvalidVersion:
        return version


def _cached(folder: Path) -> dict[tuple[str, str], Path]:
    found: dict[tuple[str, str], Path] = {}
    for path in folder.glob("*.whl"):
        try:
            name, version, _, _ = parse_wheel_filename(path.name)
        except InvalidWheelFilename:
            continue
        found[(str(name), str(version))] = path
    return found
