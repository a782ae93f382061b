"""Rewriting a service's version in its source file, and reading it without importing."""

from __future__ import annotations

from pathlib import Path

import pytest

from lumi.config import load_config
from lumi.model.interface import ServiceInterface
from lumi.model.semver import VersionError
from lumi.packaging.introspect import ServiceEntry
from lumi.packaging.versioning import bump_source, static_versions

SOURCE = '''"""Two services."""

import lumi


class Kept(lumi.Service):
    """Has a version."""

    version = '1.2.3'  # bumped by lumi version

    @lumi.api
    def ping(self) -> str:
        return "pong"


class Bare(lumi.Service):
    @lumi.api
    def ping(self) -> str:
        return "pong"


class Documented(lumi.Service):
    """No version yet."""

    name = "Docs"
'''


def entry(file: Path, cls: str) -> ServiceEntry:
    return ServiceEntry(f"app.mod:{cls}", str(file), ServiceInterface(name=cls))


@pytest.fixture
def app(tmp_path: Path) -> Path:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "app" / "mod.py").write_text(SOURCE)
    (tmp_path / "lumi.toml").write_text(
        '[app]\nname = "t"\nservices = ["app.mod:Kept", "app.mod:Bare", "app.mod:Documented"]\n'
    )
    return tmp_path


def test_an_existing_literal_is_replaced_in_place(app: Path) -> None:
    """Only the string changes: its quotes, the comment and every other line stay."""
    file = app / "app" / "mod.py"
    bump_source(entry(file, "Kept"), "1.3.0")
    assert file.read_text() == SOURCE.replace("'1.2.3'", "'1.3.0'")


def test_a_missing_version_is_inserted_after_the_docstring_or_first(app: Path) -> None:
    """With a docstring the version follows it; without, it opens the class body."""
    file = app / "app" / "mod.py"
    bump_source(entry(file, "Documented"), "0.1.1")
    bump_source(entry(file, "Bare"), "0.2.0")
    text = file.read_text()
    assert '    """No version yet."""\n\n    version = "0.1.1"\n\n    name = "Docs"\n' in text
    assert 'class Bare(lumi.Service):\n    version = "0.2.0"\n\n    @lumi.api\n' in text
    compile(text, str(file), "exec")


def test_versions_are_read_without_importing(app: Path) -> None:
    """static_versions reads names and versions from the AST (``name`` overrides honoured)."""
    assert static_versions(load_config(app)) == {"Kept": "1.2.3", "Bare": "0.1.0", "Docs": "0.1.0"}


def test_a_computed_version_cannot_be_bumped(app: Path) -> None:
    """``version = VERSION`` is refused with what Lumi can edit."""
    file = app / "app" / "mod.py"
    file.write_text(SOURCE.replace("'1.2.3'", "VERSION"))
    with pytest.raises(VersionError, match="not a string literal"):
        bump_source(entry(file, "Kept"), "2.0.0")
