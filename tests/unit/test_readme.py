"""The README's runnable snippets run."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import ROOT


def python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "asyncio.run(" in b]


def test_readme_scripts_run() -> None:
    """Every complete script in the README runs and prints something."""
    blocks = python_blocks()
    assert blocks, "the README has no runnable script"
    for block in blocks:
        out = subprocess.run(
            [sys.executable, "-c", block], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip()
