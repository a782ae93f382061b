"""What a newcomer runs without an app running: the hint ``lumi gen --check`` prints is a
command that works, a backend whose library is missing is a config error naming the extra,
and the generated Python client imports only what installing Lumi installs."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from lumi.backends import BROKERS, TRANSPORTS, Backend, Registry, _exists
from tests.conftest import ROOT, SHOP

LUMI = [sys.executable, "-m", "lumi.cli.main"]


def run(
    args: list[str], cwd: Path, *, hide: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """The CLI in a subprocess; ``hide`` makes those modules missing, as if not installed."""
    if hide:
        code = (f"import sys; sys.modules.update(dict.fromkeys({list(hide)!r})); "
                "sys.argv[0] = 'lumi'; from lumi.cli.main import main; main()")  # fmt: skip
        argv = [sys.executable, "-c", code, *args]
    else:
        argv = [*LUMI, *args]
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"})  # fmt: skip


def test_gen_check_hint_runs_as_printed(tmp_path: Path) -> None:
    """The command ``--check`` prints for stale files, run as printed from the same folder,
    makes the check pass (it keeps --app, --env, the services and --package)."""
    check = ["gen", "proto", "Orders", "--out", "out dir", "--app", str(SHOP),
             "--env", "grpc", "--package", "acme", "--check"]  # fmt: skip
    stale = run(check, tmp_path)
    assert stale.returncode == 1
    hint = stale.stderr.strip().splitlines()[-1]
    assert "; run: lumi gen " in hint, hint
    words = shlex.split(hint.split("; run: ", 1)[1])
    assert words[:2] == ["lumi", "gen"] and "--app" in words and "--env" in words
    fixed = run(words[1:], tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    again = run(check, tmp_path)
    assert again.returncode == 0 and "up to date" in again.stdout, again.stderr


def _with_extras(registry: Registry) -> list[Backend]:
    return [b for b in registry.builtins.values() if b.requires and _exists(b.module)]


@pytest.mark.parametrize(
    ("key", "backend"),
    [("events", b) for b in _with_extras(BROKERS)] + [("rpc", b) for b in _with_extras(TRANSPORTS)],
    ids=lambda value: value if isinstance(value, str) else value.name,
)
def test_a_backend_without_its_library_is_a_config_error_naming_the_extra(
    tmp_path: Path, key: str, backend: Backend
) -> None:
    """``lumi run`` of an app choosing a backend whose client library is missing exits 2 with
    one line naming the key and the pip extra — before any service starts."""
    value = f"{backend.name}://127.0.0.1:1" if key == "events" else backend.name
    (tmp_path / "lumi.toml").write_text(
        f'[app]\nname = "t"\nservices = ["svc:S"]\n[defaults]\n{key} = "{value}"\n'
    )
    (tmp_path / "svc.py").write_text("raise SystemExit('the service must not be imported')\n")
    result = run(["run", ".", "--no-dashboard"], tmp_path, hide=backend.requires)
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: lumi.toml: defaults.{key}: "), line
    assert f"pip install 'lumi-runtime[{backend.extra or backend.name}]'" in line, line


def _installed_with_lumi() -> set[str]:
    """Distributions that ``pip install lumi-runtime`` brings: its dependencies (from this
    tree's pyproject.toml) and, transitively, theirs."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    todo = [Requirement(text).name for text in project["dependencies"]]
    found: set[str] = set()
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in found:
            continue
        found.add(name)
        for text in importlib.metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return found


def test_the_generated_python_client_imports_only_what_lumi_installs(tmp_path: Path) -> None:
    """Every third-party module a generated client imports comes with lumi-runtime."""
    out = tmp_path / "gen"
    assert (
        run(["gen", "python-client", "--app", str(SHOP), "--out", str(out)], tmp_path).returncode
        == 0
    )
    imported: set[str] = set()
    for path in out.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = sorted(
        m for m in imported if m not in sys.stdlib_module_names and m != "__future__"
    )
    assert "httpx" in third_party
    owners = importlib.metadata.packages_distributions()
    installed = _installed_with_lumi()
    for module in third_party:
        owned = {d.lower().replace("_", "-") for d in owners[module]}
        assert owned & installed, f"{module} is not installed by Lumi"
