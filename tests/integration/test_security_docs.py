"""docs/security.md's snippets run as written: the service with an auth handler defines, and
the curl command calls the running shop as the operator."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import lumi
from tests.conftest import ROOT
from tests.integration.harness import LumiRun

DOC = (ROOT / "docs" / "security.md").read_text()


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", DOC, re.S)


def test_the_auth_example_defines_a_public_method_and_a_handler() -> None:
    """The Python example runs: Front's interface has a public method and an auth handler."""
    (example,) = [b for b in blocks("python") if "@lumi.auth" in b]
    scope: dict[str, object] = {}
    exec(compile(example, "docs/security.md", "exec"), scope)
    iface = lumi.interface(scope["Front"])  # type: ignore[arg-type]
    assert iface.auth and iface.methods["whoami"].public


def test_the_curl_example_calls_the_shop_as_the_operator(
    lumi_run: Callable[..., LumiRun], tmp_path: Path
) -> None:
    """With the shop running, the curl block (after its `lumi run` line) prints a product."""
    shop = tmp_path / "examples" / "shop"
    shutil.copytree(ROOT / "examples" / "shop", shop, ignore=shutil.ignore_patterns(".lumi"))
    run = lumi_run(shop, "--no-dashboard")
    run.wait_ready()
    (script,) = [b for b in blocks("sh") if "curl --cert" in b]
    lines = [line for line in script.splitlines() if not line.startswith("lumi run")]
    done = subprocess.run(
        ["bash", "-c", "\n".join(lines)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["name"] == "Apple"
