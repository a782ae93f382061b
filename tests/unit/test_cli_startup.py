"""The CLI starts cheaply: defining its commands and printing any help loads none of the
heavy libraries (they load inside the command that needs them), and the constants the CLI
copies to show in its help are the library's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from lumi.backends import GENERATORS
from lumi.cli import constants
from lumi.cli.main import app
from lumi.codegen import targets
from lumi.dashboard.server import DEFAULT_PORT
from lumi.packaging.ci import STAGES
from lumi.packaging.compat import ALLOW_FILE
from lumi.packaging.github import WORKFLOW

# What made `lumi --help` take ~0.45 s and ~60 MB before (issue 12).
HEAVY = ("asyncio", "aiohttp", "opentelemetry", "structlog", "rich", "pydantic", "httpx",
         "lumi.runtimes", "lumi.config", "lumi.pipeline", "lumi.transports", "lumi.packaging")  # fmt: skip

_LOADED = """
import json, sys
sys.argv[0] = "lumi"
from lumi.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
sys.stdout.flush()
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def loaded_by(*args: str) -> list[str]:
    """The modules a fresh interpreter has loaded after ``lumi ARGS`` (which must succeed)."""
    out = subprocess.run([sys.executable, "-c", _LOADED, *args], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "NO_COLOR": "1"})  # fmt: skip
    modules: list[str] = json.loads(out.stderr.strip().splitlines()[-1])
    assert "Usage:" in out.stdout, out.stdout
    return modules


def heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]


def all_command_paths() -> list[list[str]]:
    """Every command and group of the CLI, as the words that name it."""

    def walk(command: object, path: list[str]) -> list[list[str]]:
        found = [path]
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            found += walk(sub, [*path, name])
        return found

    return walk(typer.main.get_command(app), [])


def test_the_copied_constants_are_the_librarys() -> None:
    """Each constant lumi.cli.constants copies equals the one the library uses."""
    assert constants.ALLOW_FILE == ALLOW_FILE
    assert constants.CI_STAGES == STAGES
    assert constants.CI_WORKFLOW == WORKFLOW
    assert constants.DASHBOARD_PORT == DEFAULT_PORT
    assert sorted(GENERATORS.builtins) == [t for t in targets() if t in GENERATORS.builtins]


def test_lumi_help_loads_no_heavy_library() -> None:
    """`lumi --help` imports none of the heavy libraries."""
    assert heavy(loaded_by("--help")) == []


@pytest.mark.parametrize("command", ["call", "ls", "run", "events", "deploy"])
def test_a_commands_help_loads_no_heavy_library(command: str) -> None:
    """`lumi COMMAND --help` imports none of the heavy libraries — not even pydantic, which
    typer (0.2x) would load to coerce the options (lumi.cli._coerce coerces plain ones)."""
    assert heavy(loaded_by(command, "--help")) == []


def test_plain_options_are_coerced_as_typer_would(tmp_path: Path) -> None:
    """Ints, floats, paths and lists convert without pydantic; a value out of range or not a
    number gets typer's own error (its coercion takes over), exit 2."""
    from lumi.cli._coerce import _leaf, _NotPlain

    class Info:
        min, max = 1, 64

    assert _leaf(int, Info, " 7 ") == 7
    assert _leaf(Path, Info, "a/b") == Path("a/b")
    assert _leaf(bool, Info, "Yes") is True
    for annotation, value in [(int, "65"), (int, "0"), (int, "7.5"), (bool, "maybe")]:
        with pytest.raises(_NotPlain):
            _leaf(annotation, Info, value)
    out = subprocess.run([sys.executable, "-m", "lumi.cli.main", "run", str(tmp_path),
                          "--nodes", "65"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "NO_COLOR": "1"})  # fmt: skip
    assert out.returncode == 2 and "less than or equal to 64" in out.stderr, out.stderr
    timeout = subprocess.run([sys.executable, "-m", "lumi.cli.main", "call", "A.b", "--timeout",
                              "soon"], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "NO_COLOR": "1"})  # fmt: skip
    assert timeout.returncode == 2 and "valid number" in timeout.stderr, timeout.stderr


def test_every_command_prints_its_help() -> None:
    """Every command and group answers --help with its usage and exits 0 (in one process)."""
    paths = all_command_paths()
    assert len(paths) > 20  # the walk found the groups' commands too
    code = ("import sys\nsys.argv[0] = 'lumi'\nfrom lumi.cli.main import main\nfor words in " + repr(paths) + ":\n"
            "    try:\n        main([*words, '--help'])\n    except SystemExit as exc:\n"
            "        assert not exc.code, (words, exc.code)\n    print('==', ' '.join(words))\n")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "NO_COLOR": "1"})  # fmt: skip
    assert out.returncode == 0, out.stderr
    *helps, _ = out.stdout.split("\n== ")  # each help is followed by its command's words
    assert len(helps) == len(paths)
    assert all("Usage: lumi" in text for text in helps)


def test_a_command_runs_in_an_app_of_only_that_command() -> None:
    """``lumi NAME ...`` builds only NAME's commands (typer reads every signature of an app on
    each start); its help and errors are the whole app's, an unknown name gets the whole app."""
    from lumi.cli.main import only

    ls = only("ls")
    assert ls is not None and [c.name for c in ls.registered_commands] == ["ls"]
    build = only("build")
    assert build is not None and [g.name for g in build.registered_groups] == ["build"]
    assert only("lss") is None
    code = ("import sys\nsys.argv[0] = 'lumi'\nfrom lumi.cli import main as m\nfor entry in "
            "(m.app, m.main):\n    for words in (['ls', '-h'], ['build', 'lock', '-h'], "
            "['events', 'dlq', '-h'], ['call', 'A.b', '--nope']):\n        try:\n"
            "            entry(words) if entry is m.main else entry(args=words)\n"
            "        except SystemExit:\n            pass\n        print('==')\n")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "NO_COLOR": "1"})  # fmt: skip
    parts = out.stdout.split("==\n")
    assert len(parts) == 9 and parts[:4] == parts[4:8], out.stdout + out.stderr
