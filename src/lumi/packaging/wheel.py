"""The app's wheel, built by PyPA's ``build`` with the app's own backend, and the lock of its
exact dependencies.

The lock (``requirements.lock`` next to ``lumi.toml``, pip's requirements syntax, one
``name==version`` per line) is an input of the build like the source: when it exists it is used
as written and must pin every dependency of the wheel; when it does not, the build writes it
from the versions installed in the building environment (what the tests ran against).
"""

from __future__ import annotations

import dataclasses
import email.parser
import importlib.metadata
import re
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from lumi.packaging.errors import BuildError

LOCK_FILE = "requirements.lock"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)\s*(?:#.*)?$")


@dataclasses.dataclass(frozen=True)
class Wheel:
    """A built wheel: file name, bytes and what its metadata requires."""

    name: str
    data: bytes
    requires: tuple[str, ...]
    requires_python: str
    backend: str  # e.g. "hatchling 1.33.0"


def build_wheel(source: Path, out: Path, *, epoch: int, isolated: bool = False) -> Wheel:
    """Build ``source``'s wheel into ``out`` with SOURCE_DATE_EPOCH=``epoch``."""
    try:
        import build
        import build.env
        import pyproject_hooks
    except ImportError:
        raise BuildError(
            "lumi build needs PyPA build: pip install 'lumi-runtime[shipping]'"
        ) from None
    if not (source / "pyproject.toml").is_file():
        raise BuildError(
            f"{source.name}: no pyproject.toml; the app's wheel is built from one "
            f"(a [build-system] and a [project] table; see docs/shipping.md)"
        )

    def runner(
        cmd: Sequence[str], cwd: str | None = None, extra_environ: Mapping[str, str] | None = None
    ) -> None:
        environ = {**(extra_environ or {}), "SOURCE_DATE_EPOCH": str(max(epoch, 315532800))}
        pyproject_hooks.quiet_subprocess_runner(cmd, cwd, environ)

    try:
        if isolated:
            with build.env.DefaultIsolatedEnv() as env:
                builder = build.ProjectBuilder.from_isolated_env(env, source, runner=runner)
                env.install(builder.build_system_requires)
                env.install(builder.get_requires_for_build("wheel"))
                path = builder.build("wheel", out)
        else:
            builder = build.ProjectBuilder(source, runner=runner)
            missing = sorted(
                str(next(iter(chain))) for chain in builder.check_dependencies("wheel")
            )
            if missing:
                raise BuildError(
                    f"the app's build backend needs {', '.join(missing)}: install it, or "
                    f"build with --isolated"
                )
            path = builder.build("wheel", out)
    except build.BuildException as exc:
        raise BuildError(f"building the wheel failed: {str(exc).splitlines()[0]}") from None
    except build.BuildBackendException as exc:
        detail = str(exc.exception).strip().splitlines()
        raise BuildError(f"building the wheel failed: {detail[-1] if detail else exc}") from None
    wheel = Path(path)
    metadata = _metadata(wheel)
    return Wheel(
        name=wheel.name,
        data=wheel.read_bytes(),
        requires=tuple(metadata.get_all("Requires-Dist") or ()),
        requires_python=metadata.get("Requires-Python") or "",
        backend=_backend_version(source),
    )


def _metadata(wheel: Path) -> Any:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(archive.read(name).decode())


def _backend_version(source: Path) -> str:
    import tomllib

    backend = tomllib.loads((source / "pyproject.toml").read_text()).get("build-system", {})
    module = str(backend.get("build-backend", "setuptools.build_meta")).split(".")[0].split(":")[0]
    for dist in importlib.metadata.packages_distributions().get(module, []):
        return f"{dist} {importlib.metadata.version(dist)}"
    return module


def lock_from_environment(requires: Sequence[str], wheel: str) -> str:
    """Pin ``requires`` and everything they require, transitively, to the versions installed
    here (markers evaluated for this interpreter, extras followed)."""
    pins: dict[str, str] = {}
    extras_of: dict[str, set[str]] = {}
    queue = [(_requirement(text, wheel), frozenset({""})) for text in requires]
    while queue:
        req, active = queue.pop()
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in active):
            continue
        name = canonicalize_name(req.name)
        try:
            dist = importlib.metadata.distribution(req.name)
        except importlib.metadata.PackageNotFoundError:
            raise BuildError(
                f"{wheel} requires {req}, which is not installed here; install it so the lock "
                f"can pin it, or write {LOCK_FILE} by hand"
            ) from None
        if not req.specifier.contains(Version(dist.version), prereleases=True):
            raise BuildError(f"{wheel} requires {req}, but {name} {dist.version} is installed")
        if name in pins and set(req.extras) <= extras_of[name]:
            continue
        pins[name] = dist.version
        extras_of.setdefault(name, set()).update(req.extras)
        followed = frozenset({"", *extras_of[name]})
        queue += [(_requirement(text, name), followed) for text in dist.requires or ()]
    header = f"# Exact dependencies of {wheel.split('-')[0]}, written by lumi build.\n"
    return header + "".join(f"{name}=={pins[name]}\n" for name in sorted(pins))


def _requirement(text: str, where: str) -> Requirement:
    try:
        return Requirement(text)
    except InvalidRequirement as exc:
        raise BuildError(f"{where}: bad requirement {text!r}: {exc}") from None


def read_lock(path: Path) -> dict[str, str]:
    """The pins of a lock file (``name==version`` lines; comments and blanks allowed)."""
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


def check_lock(path: Path, requires: Sequence[str], wheel: str) -> None:
    """Refuse a lock that leaves one of the wheel's own requirements unpinned or out of range."""
    pins = read_lock(path)
    for text in requires:
        req = _requirement(text, wheel)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        pinned = pins.get(canonicalize_name(req.name))
        if pinned is None:
            raise BuildError(
                f"{path.name} does not pin {req.name} (required by {wheel}); add it, or delete "
                f"the lock and build again to write a fresh one"
            )
        if not req.specifier.contains(Version(pinned), prereleases=True):
            raise BuildError(f"{path.name} pins {req.name}=={pinned}, but {wheel} requires {req}")
