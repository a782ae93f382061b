"""Version ranges and bumps."""

from __future__ import annotations

import re

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


def _readme_version_rule() -> str:
    from tests.conftest import ROOT

    text = " ".join((ROOT / "README.md").read_text().split())
    start = text.index("Below 1.0 the minor version is the breaking one")
    return text[start : text.index("## ", start)]


def test_the_readme_states_the_ranges_lumi_applies() -> None:
    """Each ``^X` is `>=A, <B``` of README's version rule is what the range means here."""
    rule = _readme_version_rule()
    pairs = re.findall(r"`(\^[\d.]+)` is `([^`]+)`", rule)
    assert len(pairs) >= 3, rule
    for text, meaning in pairs:
        assert set(parse_range(text).meaning().split(",")) == set(meaning.split(", ")), text


def test_the_readme_states_the_bump_a_breaking_change_needs() -> None:
    """``a breaking change of `A` needs `B``` (and ``(of `C`: `D`)``): B is the least version
    the release check accepts after a breaking change of A."""
    import lumi
    from lumi.model.interface import ServiceInterface, interface
    from lumi.packaging.compat import Change, Level, version_errors

    rule = _readme_version_rule()
    cases = re.findall(r"a breaking change of `([\d.]+)` needs `([\d.]+)`", rule)
    cases += re.findall(r"\(of `([\d.]+)`: `([\d.]+)`\)", rule)
    assert len(cases) == 2, rule

    def iface(version: str) -> ServiceInterface:
        class S(lumi.Service):
            pass

        S.version = version
        return interface(S).model_copy(update={"version": version})

    change = Change("S", "method-removed", "S.m", Level.WIRE, "removed")
    for was, needed in cases:
        old = {"S": iface(was)}
        assert version_errors(old, {"S": iface(needed)}, [change]) == []
        patch = bump(was, "patch")  # what a non-breaking change would be
        assert version_errors(old, {"S": iface(patch)}, [change]), (was, patch)
