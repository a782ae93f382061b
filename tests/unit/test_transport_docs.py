"""docs/transports.md's runnable snippets run."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import ROOT


def test_transport_doc_scripts_run() -> None:
    """Every complete script in docs/transports.md runs and prints; the gRPC one answers."""
    text = (ROOT / "docs" / "transports.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "asyncio.run(" in b]
    assert blocks, "docs/transports.md has no runnable script"
    for block in blocks:
        out = subprocess.run(
            [sys.executable, "-c", block], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip()
    assert "hello grpc" in out.stdout  # the gRPC example answers over gRPC
