"""Every ``lumi`` command the docs show is one the CLI has, and one a test runs.

The commands are the ``lumi ...`` lines of README.md's and docs/*.md's shell blocks. Each names
a command path (``lumi events dlq ls``), found by walking the CLI's own command tree; it must
exist, and some test must run it: a test's list of arguments holds the path's words in a row
(``["events", "dlq", "ls", ...]``, ``lumi("gen", "proto", ...)``), or the test runs the shell
blocks of that doc as written (``RUN_AS_WRITTEN``)."""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import typer.main

from lumi.cli.main import app
from tests.conftest import ROOT

# Docs (or one section of one) whose shell blocks a test runs in order, as written.
RUN_AS_WRITTEN = {
    ("docs/shipping.md", ""): "tests/integration/test_shipping_docs.py",
    ("README.md", "## Shipping"): "tests/integration/test_shipping_docs.py",
}


def documented() -> list[tuple[str, str, str]]:
    """(doc, section, command line) of every ``lumi`` command in a shell block."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        doc = str(path.relative_to(ROOT))
        section = ""
        text = path.read_text()
        for match in re.finditer(r"^(## [^\n]*)$|^```(?:sh|console)\n(.*?)^```", text, re.M | re.S):
            if match.group(1):
                section = match.group(1)
                continue
            for line in match.group(2).replace("\\\n", " ").splitlines():
                for part in re.split(r"&&|;|\||/ (?=lumi )", line.strip().removeprefix("$ ")):
                    words = part.split("#")[0].strip()
                    if words.startswith("lumi "):
                        found.append((doc, section, words))
    return found


def _words(line: str) -> list[str]:
    try:
        return shlex.split(line)[1:]
    except ValueError:  # an unbalanced quote in a placeholder
        return line.split()[1:]


def _walk(line: str) -> tuple[tuple[str, ...], object]:
    node: object = typer.main.get_command(app)
    path: list[str] = []
    for word in _words(line):
        commands = getattr(node, "commands", {})
        if word not in commands:
            break
        node = commands[word]
        path.append(word)
    return tuple(path), node


def command_path(line: str) -> tuple[str, ...]:
    """The words of ``line`` that name a command or group, from the CLI's tree."""
    return _walk(line)[0]


def unknown_options(line: str) -> list[str]:
    """The ``--options`` of ``line`` its command does not have."""
    _, node = _walk(line)
    known = {
        opt for param in getattr(node, "params", []) for opt in [*param.opts, *param.secondary_opts]
    }
    known |= {"--help", "-h"}
    written = [w.strip("[]").split("=")[0] for w in _words(line) if w.strip("[").startswith("-")]
    return [w for w in written if w not in known]


def _runs_in_tests() -> set[tuple[str, ...]]:
    """Every run of consecutive string constants in the tests' lists, tuples and calls."""
    runs: set[tuple[str, ...]] = set()
    for path in (ROOT / "tests").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            items = node.elts if isinstance(node, ast.List | ast.Tuple) else None
            if isinstance(node, ast.Call):
                items = node.args
            if not items:
                continue
            words: list[str] = []
            for item in [*items, None]:
                if isinstance(item, ast.Constant) and isinstance(item.value, str):
                    words.extend(item.value.split() if " " in item.value else [item.value])
                    continue
                for start in range(len(words)):
                    for end in range(start + 1, min(len(words), start + 4) + 1):
                        runs.add(tuple(words[start:end]))
                words = []
    return runs


def test_every_documented_command_exists_and_a_test_runs_it() -> None:
    lines = documented()
    assert len(lines) > 50
    runs = _runs_in_tests()
    for (doc, _section), test in RUN_AS_WRITTEN.items():
        assert doc.rsplit("/", 1)[-1] in (ROOT / test).read_text(), test
    unknown, unrun = [], []
    for doc, section, line in lines:
        path = command_path(line)
        if not path or unknown_options(line):
            unknown.append(f"{doc}: {line} {unknown_options(line) if path else ''}")
        elif (doc, section) in RUN_AS_WRITTEN or (doc, "") in RUN_AS_WRITTEN:
            continue
        elif path not in runs and ("lumi", *path) not in runs:
            unrun.append(f"{doc}: {line} ({' '.join(path)})")
    assert unknown == [], "no such command"
    assert unrun == [], "no test runs these"


def test_a_command_path_is_read_from_the_cli() -> None:
    assert command_path("lumi events dlq ls --app x") == ("events", "dlq", "ls")
    assert command_path("lumi call Orders.get order_id=ID") == ("call",)
    assert command_path("lumi nosuch thing") == ()
    assert unknown_options("lumi events tail T [--from-start] [-n COUNT]") == []
    assert unknown_options("lumi ls --app x --colour") == ["--colour"]
    assert Path(__file__).name in {p.name for p in (ROOT / "tests" / "unit").glob("*.py")}
