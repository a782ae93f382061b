"""Helpers for the shipping tests: the example app in a git repository of its own, and the
``lumi`` CLI run as a user runs it (a subprocess with this tree's sources)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHOP = ROOT / "examples" / "shop"
COMMIT_DATE = "2026-03-01T12:00:00+00:00"
COMMIT_EPOCH = 1772366400


def git(folder: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_DATE": COMMIT_DATE, "GIT_COMMITTER_DATE": COMMIT_DATE,
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}  # fmt: skip
    out = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                         env=env, check=True, timeout=60)  # fmt: skip
    return out.stdout.strip()


def shop_repo(target: Path) -> Path:
    """A git repository holding a copy of the example shop, committed at a fixed date; returns
    the app folder (``target/shop``)."""
    app = target / "shop"
    shutil.copytree(SHOP, app, ignore=shutil.ignore_patterns("__pycache__", ".lumi"))
    git(target, "init", "-q", "-b", "main")
    git(target, "add", "-A")
    git(target, "commit", "-q", "-m", "shop")
    return app


def lumi(*args: str, cwd: Path, env: dict[str, str] | None = None,
         timeout: float = 180) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Run ``lumi ARGS`` in ``cwd``; SOURCE_DATE_EPOCH is unset unless ``env`` sets it."""
    environ = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    environ.update({"PYTHONPATH": str(ROOT / "src"), "COLUMNS": "200", **(env or {})})
    return subprocess.run([sys.executable, "-m", "lumi.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, env=environ, timeout=timeout)  # fmt: skip


def digests(output: str) -> dict[str, str]:
    """``{service: digest}`` from ``lumi build`` output lines ``Name version sha256:…``."""
    found = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2].startswith("sha256:"):
            found[parts[0]] = parts[2]
    return found
