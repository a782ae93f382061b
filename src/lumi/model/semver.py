"""Semantic versions and the ranges services require of each other.

Ranges use Cargo's and npm's notation, translated once into a PEP 440 specifier set so that
matching is done by ``packaging`` (the library pip uses):

=============  ==========================  =============================================
range          means                       why
=============  ==========================  =============================================
``^2.1``       ``>=2.1.0, <3.0.0``         compatible: same major version
``^0.2.3``     ``>=0.2.3, <0.3.0``         below 1.0 the minor version is the breaking one
``~2.1``       ``>=2.1.0, <2.2.0``         patch updates only
``2.1.*``      ``>=2.1.0, <2.2.0``         wildcard
``2.1.3``      ``==2.1.3``                 exact (also ``=2.1.3``)
``>=2, <4``    as written                  comparisons, comma-separated
``*``          any version
=============  ==========================  =============================================
"""

from __future__ import annotations

import dataclasses
import re

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from lumi.model.errors import AppError


class VersionError(AppError):
    """A bad version or range, or a bump that does not announce a breaking change."""


_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?$")
_PARTIAL = re.compile(r"^(\d+)(?:\.(\d+))?(?:\.(\d+))?$")
BUMPS = ("major", "minor", "patch")


def parse(text: str) -> Version:
    """A semantic version (``MAJOR.MINOR.PATCH`` with an optional ``-pre``), ordered."""
    if not _SEMVER.match(text):
        raise VersionError(f"{text!r} is not a semantic version (MAJOR.MINOR.PATCH, like 1.4.0)")
    try:
        return Version(text)
    except InvalidVersion:
        raise VersionError(f"{text!r} is not a version pip can order (try 1.4.0-rc1)") from None


def is_version(text: str) -> bool:
    try:
        parse(text)
    except VersionError:
        return False
    return True


def bump(text: str, part: str) -> str:
    """``text`` with its ``major``, ``minor`` or ``patch`` part raised (a pre-release drops)."""
    if part not in BUMPS:
        raise VersionError(f"cannot bump {part!r}; say one of: {', '.join(BUMPS)}")
    major, minor, patch = parse(text).release[:3]
    if part == "major":
        return f"{major + 1}.0.0"
    if part == "minor":
        return f"{major}.{minor + 1}.0"
    return f"{major}.{minor}.{patch + 1}"


def sort_versions(versions: list[str]) -> list[str]:
    """The semantic versions among ``versions``, oldest first; anything else is left out."""
    return sorted((v for v in versions if is_version(v)), key=parse)


@dataclasses.dataclass(frozen=True)
class Range:
    """A version range as written (``text``) and as a specifier set (``spec``)."""

    text: str
    spec: SpecifierSet

    def __contains__(self, version: str) -> bool:
        return self.spec.contains(parse(version), prereleases=True)

    def __str__(self) -> str:
        return self.text

    def meaning(self) -> str:
        """The range spelled as comparisons, e.g. ``>=2.1.0,<3.0.0``."""
        return ",".join(sorted(str(s) for s in self.spec)) or "any version"


def parse_range(text: str) -> Range:
    """Read a range written as in the module docstring; a bad one is a :class:`VersionError`."""
    source = text.strip()
    parts = [p.strip() for p in source.split(",")] if source else []
    if not parts or any(not p for p in parts):
        raise VersionError(f"{text!r} is not a version range (try ^2.1, ~2.1, >=2,<3 or 2.1.3)")
    specs: list[str] = []
    for part in parts:
        specs += _one(part, text)
    try:
        return Range(source, SpecifierSet(",".join(specs)))
    except InvalidSpecifier:
        raise VersionError(f"{text!r} is not a version range (try ^2.1 or >=2,<3)") from None


def _one(part: str, whole: str) -> list[str]:
    if part == "*":
        return []
    if part[0] in "^~":
        major, minor, patch, given = _numbers(part[1:], whole)
        low = f">={major}.{minor}.{patch}"
        if part[0] == "~":
            return [low, f"<{major}.{minor + 1}.0" if given > 1 else f"<{major + 1}.0.0"]
        if major > 0 or given == 1:
            return [low, f"<{major + 1}.0.0"]
        if minor > 0 or given == 2:
            return [low, f"<0.{minor + 1}.0"]
        return [low, f"<0.0.{patch + 1}"]
    if part.endswith(".*"):
        major, minor, _, given = _numbers(part[:-2], whole)
        if given == 1:
            return [f">={major}.0.0", f"<{major + 1}.0.0"]
        return [f">={major}.{minor}.0", f"<{major}.{minor + 1}.0"]
    match = re.match(r"^(>=|<=|>|<|==|=|!=)?\s*(.+)$", part)
    assert match is not None  # the pattern matches any non-empty text
    op, version = match.group(1) or "==", match.group(2)
    if not _SEMVER.match(version) and not _PARTIAL.match(version):
        raise VersionError(f"{whole!r}: {version!r} is not a version")
    return [f"{'==' if op == '=' else op}{version}"]


def _numbers(text: str, whole: str) -> tuple[int, int, int, int]:
    match = _PARTIAL.match(text.strip())
    if not match:
        raise VersionError(f"{whole!r}: {text!r} is not MAJOR[.MINOR[.PATCH]]")
    numbers = [int(g) if g is not None else 0 for g in match.groups()]
    given = sum(g is not None for g in match.groups())
    return numbers[0], numbers[1], numbers[2], given
