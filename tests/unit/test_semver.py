"""Version ranges and bumps."""

from __future__ import annotations

import pytest

from lumi.model.semver import VersionError, bump, parse_range, sort_versions


@pytest.mark.parametrize(
    ("text", "inside", "outside"),
    [
        ("^2.1", ["2.1.0", "2.9.3"], ["2.0.9", "3.0.0"]),
        ("^0.2.3", ["0.2.3", "0.2.9"], ["0.3.0", "0.2.2"]),
        ("^0.0.3", ["0.0.3"], ["0.0.4"]),
        ("~2.1", ["2.1.0", "2.1.7"], ["2.2.0"]),
        ("~2", ["2.0.0", "2.9.0"], ["3.0.0"]),
        ("2.1.*", ["2.1.0", "2.1.5"], ["2.2.0"]),
        ("2.*", ["2.0.0", "2.5.1"], ["3.0.0"]),
        ("2.1.3", ["2.1.3"], ["2.1.4"]),
        ("=2.1.3", ["2.1.3"], ["2.1.2"]),
        (">=1.2, <2", ["1.2.0", "1.9.9"], ["2.0.0", "1.1.0"]),
        ("*", ["0.0.1", "9.0.0"], []),
    ],
)
def test_ranges_match_what_cargo_means(text: str, inside: list[str], outside: list[str]) -> None:
    """Caret, tilde, wildcard, exact and comparison ranges admit exactly the right versions."""
    rng = parse_range(text)
    assert all(v in rng for v in inside)
    assert not any(v in rng for v in outside)


@pytest.mark.parametrize("text", ["", "^", "banana", "^1.x", ">=1.2,", "~a.b"])
def test_bad_ranges_say_what_would_be_right(text: str) -> None:
    """A bad range is a VersionError with an example of a good one or naming the bad part."""
    with pytest.raises(VersionError, match=r"range|not"):
        parse_range(text)


def test_meaning_spells_the_range_as_comparisons() -> None:
    """``^2.1`` reads as ``<3.0.0,>=2.1.0``."""
    assert parse_range("^2.1").meaning() == "<3.0.0,>=2.1.0"


def test_bumps_and_ordering() -> None:
    """Bumps reset lower parts; sorting is numeric and drops non-versions."""
    assert bump("1.4.2", "major") == "2.0.0"
    assert bump("1.4.2", "minor") == "1.5.0"
    assert bump("1.4.2", "patch") == "1.4.3"
    assert bump("1.5.0-rc1", "patch") == "1.5.1"
    assert sort_versions(["1.10.0", "1.2.0", "sha256-ab.sig", "1.9.0"]) == [
        "1.2.0", "1.9.0", "1.10.0",
    ]  # fmt: skip
    with pytest.raises(VersionError, match="say one of: major, minor, patch"):
        bump("1.0.0", "huge")
    with pytest.raises(VersionError, match="not a semantic version"):
        bump("1.0", "patch")
