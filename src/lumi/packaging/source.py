"""The source a build reads: which files, from which commit, and the time a build pins.

A build never reads the app folder directly: :func:`stage` copies the files that belong to the
source — in a git work tree, the tracked files and untracked ones that are not ignored; outside
git, everything but caches and Lumi's own ``.lumi`` folder — into a fresh folder with fixed
modes and mtimes, so two clones of one commit build byte-identical artifacts.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import shutil
import subprocess
from pathlib import Path

from lumi.packaging.errors import BuildError

_SKIP_DIRS = {".git", ".lumi", "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache",
              ".venv", "node_modules", "dist", "build"}  # fmt: skip
_SKIP_SUFFIXES = (".pyc", ".pyo")


@dataclasses.dataclass(frozen=True)
class SourceInfo:
    """Where the source came from and the build time it pins."""

    commit: str | None
    dirty: bool
    epoch: int  # SOURCE_DATE_EPOCH, else the commit's time, else 0

    @property
    def created(self) -> str:
        moment = datetime.datetime.fromtimestamp(self.epoch, tz=datetime.UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _git(folder: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.decode() if out.returncode == 0 else None


def source_info(folder: Path) -> SourceInfo:
    """The commit of ``folder``'s work tree, whether the app folder has uncommitted changes,
    and the pinned build time."""
    commit = (_git(folder, "rev-parse", "HEAD") or "").strip() or None
    dirty = False
    commit_time = 0
    if commit:
        # Changes to what a build reads; caches and Lumi's own .lumi folder do not count.
        status = _git(folder, "status", "--porcelain", "-z", "--untracked-files=all", "--", ".")
        entries = [e[3:] for e in (status or "").split("\0") if len(e) > 3]
        dirty = any(_keep(path) for path in entries)
        commit_time = int((_git(folder, "log", "-1", "--format=%ct") or "0").strip() or 0)
    env = os.environ.get("SOURCE_DATE_EPOCH")
    if env is not None:
        try:
            epoch = int(env)
        except ValueError:
            raise BuildError(f"SOURCE_DATE_EPOCH={env!r} is not a number of seconds") from None
    else:
        epoch = commit_time
    return SourceInfo(commit, dirty, epoch)


def source_files(folder: Path) -> list[str]:
    """The files of the app's source, relative to ``folder``, sorted."""
    listed = _git(folder, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", ".")
    if listed is not None:
        names = [n for n in listed.split("\0") if n]
        return sorted(n for n in names if _keep(n) and (folder / n).is_file())
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in files:
            relative = (Path(root) / name).relative_to(folder).as_posix()
            if _keep(relative):
                found.append(relative)
    return sorted(found)


def _keep(relative: str) -> bool:
    parts = relative.split("/")
    return not any(p in _SKIP_DIRS for p in parts[:-1]) and not relative.endswith(_SKIP_SUFFIXES)


def stage(folder: Path, target: Path, epoch: int) -> list[str]:
    """Copy the source of ``folder`` into ``target`` with modes 0644/0755 and mtime ``epoch``
    (clamped to 1980, the oldest time a zip can hold); returns the files copied."""
    files = source_files(folder)
    when = max(epoch, 315532800)
    for relative in files:
        source, copy = folder / relative, target / relative
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, copy)
        os.chmod(copy, 0o755 if os.access(source, os.X_OK) else 0o644)
        os.utime(copy, (when, when))
    return files
