"""Every Python snippet of README.md and docs/*.md runs as written.

A snippet is a whole program, run in a fresh interpreter from an empty folder, unless its
first line says ``# continues the snippet above``: then it runs joined after the one before it
(itself joined, if it continues another). A program that defines ``test_`` functions runs under
pytest, from a folder with no pytest configuration — as a user's project has none — so the
Lumi plugin alone must make its ``async def`` tests run. Snippets that need a service running
beside them are run by the test named in ``ELSEWHERE``, which reads the same file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

CONTINUES = "# continues the snippet above"
# Docs whose snippets need a registry, a repository or a running app: run, in order, by these.
ELSEWHERE = {"docs/shipping.md": "tests/integration/test_shipping_docs.py"}
# What a snippet prints, where the doc says so in a comment.
PRINTS = {"docs/transports.md": "hello grpc", "docs/limits.md": "INVALID_ARGUMENT"}


@dataclass(frozen=True)
class Snippet:
    doc: str
    line: int
    code: str  # joined after what it continues

    @property
    def name(self) -> str:
        return f"{self.doc}:{self.line}"


def snippets() -> list[Snippet]:
    found: list[Snippet] = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        doc = str(path.relative_to(ROOT))
        text = path.read_text()
        previous: Snippet | None = None
        for match in re.finditer(r"^```python\n(.*?)^```", text, re.S | re.M):
            code = match.group(1)
            line = text.count("\n", 0, match.start()) + 1
            if code.startswith(CONTINUES):
                assert previous is not None, f"{doc}:{line} continues no snippet"
                code = previous.code + "\n" + code
            previous = Snippet(doc, line, code)
            found.append(previous)
    return found


ALL = snippets()


def test_the_docs_have_snippets_and_the_elsewhere_tests_read_them() -> None:
    assert len(ALL) > 10
    for doc, test in ELSEWHERE.items():
        assert Path(doc).name in (ROOT / test).read_text(), (doc, test)


@pytest.mark.parametrize(
    "snippet", [s for s in ALL if s.doc not in ELSEWHERE], ids=lambda s: s.name
)
def test_the_snippet_runs_as_written(snippet: Snippet, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["NO_COLOR"] = "1"
    if re.search(r"^(async )?def test_", snippet.code, re.M):
        (tmp_path / "test_snippet.py").write_text(snippet.code)
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_snippet.py"]
    else:
        argv = [sys.executable, "-c", snippet.code]
    out = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, f"{snippet.name}:\n{out.stdout}\n{out.stderr}"
    if "pytest" in argv:
        assert re.search(r"\b[1-9]\d* passed\b", out.stdout) and "skipped" not in out.stdout
    if "asyncio.run(" in snippet.code:  # a whole program shows what it did
        assert out.stdout.strip(), snippet.name
    expected = PRINTS.get(snippet.doc)
    if expected:
        assert expected in out.stdout, out.stdout
