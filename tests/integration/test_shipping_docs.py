"""Every shell and Python snippet of README's Shipping section and docs/shipping.md runs as
written, in order, in a fresh copy of the examples (with a real registry for $REGISTRY)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.shipping import ROOT, git
from tests.registry import PASSWORD, USER, Registry

pytestmark = pytest.mark.slow


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def readme_shipping() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("## Shipping", 1)[1].split("\n## ", 1)[0]


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    server = Registry()
    yield server
    server.stop()


def workspace(tmp_path: Path, registry: Registry) -> tuple[Path, dict[str, str]]:
    """A git repository holding a copy of examples/, a private HOME, ``lumi`` on PATH."""
    root = tmp_path / "work"
    shutil.copytree(ROOT / "examples", root / "examples",
                    ignore=shutil.ignore_patterns("__pycache__", ".lumi"))  # fmt: skip
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "examples")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "lumi"
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m lumi.cli.main "$@"\n')
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LUMI_", "SOURCE_DATE"))}
    env.update({
        "HOME": str(tmp_path / "home"), "PATH": f"{bin_dir}:{env['PATH']}",
        "PYTHONPATH": str(ROOT / "src"), "REGISTRY": registry.url,
        "LUMI_REGISTRY_USERNAME": USER, "LUMI_REGISTRY_PASSWORD": PASSWORD,
    })  # fmt: skip
    return root, env


def run(snippet: str, language: str, cwd: Path, env: dict[str, str]) -> str:
    cmd = ["bash", "-euo", "pipefail", "-c", snippet] if language == "sh" else [
        sys.executable, "-c", snippet]  # fmt: skip
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"snippet failed:\n{snippet}\n{out.stdout}\n{out.stderr}"
    return out.stdout


def test_readme_shipping_snippets_run(tmp_path: Path, registry: Registry) -> None:
    """The README's Shipping commands build, publish, list, show versions and run CI."""
    root, env = workspace(tmp_path, registry)
    (snippet,) = blocks(readme_shipping(), "sh")
    out = run(snippet, "sh", root, env)
    assert "ci passed: gen, api, test, build" in out
    assert (
        "deploy Catalog - → 0.1.0, Inventory - → 0.1.0" in out
        and "environment local is down" in out
    )


def test_docs_shipping_snippets_run_in_order(tmp_path: Path, registry: Registry) -> None:
    """docs/shipping.md's shell snippets, then its Python snippet, all succeed."""
    root, env = workspace(tmp_path, registry)
    text = (ROOT / "docs" / "shipping.md").read_text()
    outputs = [run(snippet, "sh", root, env) for snippet in blocks(text, "sh")]
    assert any("verified" in out for out in outputs)
    assert any("Inventory 0.1.0" in out and "import inventory_client" in out for out in outputs)
    assert any("#2 deploy Catalog 0.1.0 → 0.1.1 (canary): succeeded" in out for out in outputs)
    assert any("#3 rollback Catalog 0.1.1 → 0.1.0 (rolling): succeeded" in out for out in outputs)
    scripts = [b for b in blocks(text, "python") if "asyncio.run(" in b]
    assert scripts
    for script in scripts:
        assert "Orders 0.1.0" in run(script, "python", root, env)
