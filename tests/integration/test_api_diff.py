"""``lumi api diff`` from the command line, against a real git repository's history."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

V1 = '''
import lumi

class Prices(lumi.Service):
    """Prices of things."""

    version = "1.0.0"

    @lumi.api
    def quote(self, sku: str) -> int:
        return 100

    @lumi.api
    def legacy(self) -> str:
        return "old"
'''

V2 = '''
import lumi

class Prices(lumi.Service):
    """Prices of things."""

    version = "VERSION"

    @lumi.api
    def quote(self, sku: str, qty: int = 1) -> int:
        return 100 * qty
'''


def lumi_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lumi.cli.main", *args],
        cwd=cwd, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository whose HEAD holds version 1.0.0 of an app in ``app/``."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "lumi.toml").write_text('[app]\nname = "prices"\nservices = ["prices:Prices"]\n')
    (app / "prices.py").write_text(V1)
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "v1")
    return tmp_path


def test_a_break_against_a_git_ref_fails_until_allowed_or_bumped(repo: Path) -> None:
    app = repo / "app"
    (app / "prices.py").write_text(V2.replace("VERSION", "1.1.0"))

    result = lumi_cli(app, "api", "diff", "main")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "✗ wire  Prices.legacy  method-removed" in result.stdout
    assert "Prices.quote(qty)  optional-parameter-added" in result.stdout
    assert "needs at least 2.0.0" in result.stdout

    report = json.loads(lumi_cli(app, "api", "diff", "main", "--json").stdout)
    assert report["ok"] is False and report["versions"] == {"Prices": ["1.0.0", "1.1.0"]}
    assert {(c["kind"], c["level"]) for c in report["changes"]} == {
        ("method-removed", "wire"), ("optional-parameter-added", "compatible"),
    }  # fmt: skip

    (app / "lumi-api-allow.toml").write_text(
        '[[allow]]\npath = "Prices.legacy"\nkind = "method-removed"\nreason = "unused since 0.9"\n'
    )
    allowed = lumi_cli(app, "api", "diff", "main")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert "allowed: unused since 0.9" in allowed.stdout
    assert lumi_cli(app, "api", "diff", "main", "--strict").returncode == 0

    (app / "lumi-api-allow.toml").unlink()
    (app / "prices.py").write_text(V2.replace("VERSION", "2.0.0"))
    bumped = lumi_cli(app, "api", "diff", "main")
    assert bumped.returncode == 0, bumped.stdout + bumped.stderr
    strict = lumi_cli(app, "api", "diff", "main", "--strict")
    assert strict.returncode == 1 and "is not in the allow-list" in strict.stdout


def test_files_folders_and_mistakes(repo: Path, tmp_path: Path) -> None:
    app = repo / "app"
    dumped = lumi_cli(app, "interface")
    assert dumped.returncode == 0, dumped.stderr
    old = tmp_path / "old.json"
    old.write_text(dumped.stdout)
    (app / "prices.py").write_text(V2.replace("VERSION", "2.0.0"))

    from_file = lumi_cli(tmp_path, "api", "diff", str(old), str(app), "--json")
    assert from_file.returncode == 0, from_file.stderr
    assert json.loads(from_file.stdout)["ok"] is True

    # A folder of interface JSON files works as a side too.
    folder = tmp_path / "ifaces"
    folder.mkdir()
    (folder / "prices.json").write_text(json.dumps(json.loads(dumped.stdout)["Prices"]))
    same = lumi_cli(tmp_path, "api", "diff", str(folder), str(old))
    assert same.returncode == 0 and "no changes" in same.stdout

    for args, message in [
        (["api", "diff", "no-such-ref", "--app", str(app)], "'no-such-ref' is not a file, a "),
        (["api", "diff", str(old), str(tmp_path / "empty")], "holds neither an app"),
        (["api", "diff", str(old), "--allow", str(tmp_path / "none.toml"), "--app", str(app)],
         "none.toml: cannot read"),
    ]:  # fmt: skip
        (tmp_path / "empty").mkdir(exist_ok=True)
        result = lumi_cli(tmp_path, *args)
        assert result.returncode == 2  # could not compare, as opposed to 1: a breaking change
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], result.stderr
