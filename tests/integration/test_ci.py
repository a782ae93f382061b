"""lumi ci on the example app: every stage, a failing stage stopping the run with its reason,
and the GitHub Actions workflow validated against the workflow schema."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest

from lumi.packaging.repository import open_repository
from tests.integration.shipping import git, lumi

SHOP_TEST = '''
from shop.catalog import Catalog


def test_catalog_lists_products() -> None:
    """The catalog sells three products."""
    assert len(Catalog().products()) == 3
'''


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """The example shop with generated files and a test, committed in a git repository."""
    from tests.integration.shipping import shop_repo

    app = shop_repo(tmp_path / "src")
    (app / "tests").mkdir()
    (app / "tests" / "test_shop.py").write_text(SHOP_TEST)
    out = lumi("gen", "all", "--out", "gen", cwd=app)
    assert out.returncode == 0, out.stderr
    git(app.parent, "add", "-A")
    git(app.parent, "commit", "-q", "-m", "generated files and a test")
    return app


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"LUMI_REPOSITORY": str(tmp_path / "repo")}


def stage_lines(output: str) -> dict[str, str]:
    """``{stage: state}`` from the non-terminal progress lines."""
    found = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("ok", "skipped", "failed"):
            found[parts[1]] = parts[0]
    return found


def test_every_stage_passes_and_the_release_is_published(app: Path, env: dict[str, str]) -> None:
    """gen, api, test, build, publish: all ok, and the four services are in the repository;
    a second run has nothing new to publish."""
    out = lumi("ci", cwd=app, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert stage_lines(out.stdout) == dict.fromkeys(
        ["gen", "api", "test", "build", "publish"], "ok"
    )
    assert "1 passed" in out.stdout
    repo = open_repository(env["LUMI_REPOSITORY"])
    assert asyncio.run(repo.services()) == ["Catalog", "Inventory", "Mailer", "Orders"]
    again = lumi("ci", cwd=app, env=env, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "nothing new to publish" in again.stdout


def test_stale_generated_files_stop_the_run(app: Path, env: dict[str, str]) -> None:
    """A hand-edited generated file fails gen with a one-line reason; nothing is built."""
    proto = app / "gen" / "proto" / "catalog.proto"
    proto.write_text(proto.read_text() + "// edited by hand\n")
    out = lumi("ci", cwd=app, env=env)
    assert out.returncode == 2
    assert stage_lines(out.stdout) == {"gen": "failed"}
    assert out.stderr.strip() == (
        "error: gen failed: 1 generated file(s) out of date, first gen/proto/catalog.proto; "
        "run: lumi gen all --out gen"
    )
    assert not (app / ".lumi" / "build").exists()


def test_failing_tests_stop_the_run_before_build(app: Path, env: dict[str, str]) -> None:
    """A failing test fails the test stage with pytest's summary; build and publish never run."""
    test = app / "tests" / "test_shop.py"
    test.write_text(test.read_text().replace("== 3", "== 4"))
    out = lumi("ci", cwd=app, env=env, timeout=300)
    assert out.returncode == 2
    assert stage_lines(out.stdout) == {"gen": "ok", "api": "ok", "test": "failed"}
    assert out.stderr.startswith("error: test failed: tests failed: 1 failed")
    assert not Path(env["LUMI_REPOSITORY"]).exists()


def test_an_unannounced_break_fails_the_api_stage(app: Path, env: dict[str, str]) -> None:
    """After a release, removing a method (generated files regenerated) without a bump fails
    the api stage with the refusal."""
    assert lumi("ci", "--only", "build", "--only", "publish", cwd=app, env=env).returncode == 0
    catalog = app / "shop" / "catalog.py"
    catalog.write_text(
        catalog.read_text().replace(
            "    @lumi.api(idempotent=True)\n    def products(self)", "    def products(self)"
        )
    )
    assert lumi("gen", "all", "--out", "gen", cwd=app).returncode == 0
    out = lumi("ci", "--no-publish", cwd=app, env=env)
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "error: api failed: Catalog 0.1.0 is published with another interface; bump the "
        "version: lumi version Catalog patch (or minor/major)"
    )


def test_github_workflow_is_valid_and_runs_the_same_stages(app: Path) -> None:
    """The workflow passes check-jsonschema's GitHub workflow schema and has one step per
    stage in the app's folder."""
    out = lumi("ci", "init", "github", cwd=app)
    assert out.returncode == 0, out.stderr
    workflow = app.parent / ".github" / "workflows" / "lumi.yml"
    assert out.stdout.strip() == f"wrote {workflow}"
    checker = shutil.which("check-jsonschema")
    assert checker, "check-jsonschema is missing: pip install check-jsonschema"
    checked = subprocess.run(
        [checker, "--builtin-schema", "vendor.github-workflows", str(workflow)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    from ruamel.yaml import YAML

    data = YAML(typ="safe").load(workflow.read_text())
    job = data["jobs"]["ship"]
    assert job["defaults"]["run"]["working-directory"] == "shop"
    runs = [step.get("run") for step in job["steps"] if "lumi ci" in str(step.get("run"))]
    assert runs == [f"lumi ci --only {s}" for s in ("gen", "api", "test", "build", "publish")]
    again = lumi("ci", "init", "github", cwd=app)
    assert again.returncode == 2 and "pass --force to overwrite it" in again.stderr
