"""``lumi api diff OLD [NEW]``: breaking changes between two versions of an app's interfaces.

OLD and NEW are each an interface JSON file (one interface, or a ``{name: interface}`` map as
printed by ``lumi interface``), an app folder, a folder of interface JSON files, or a git ref of
the repository holding the app (``main``, ``v1.4.0``, ``HEAD~1``). App code is imported in a child
process, so two versions of the same modules never meet in one interpreter.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lumi.cli.constants import ALLOW_FILE
from lumi.cli.gen import read_interfaces
from lumi.cli.output import fail, print_json, stdout

if TYPE_CHECKING:
    from lumi.model.interface import ServiceInterface
    from lumi.packaging.compat import Change


def load_side(spec: str, app_dir: Path, env: str | None, side: str) -> dict[str, ServiceInterface]:
    """The interfaces ``spec`` names (see the module docstring)."""
    path = Path(spec)
    if path.is_file():
        return read_interfaces([path], code=2)
    if path.is_dir():
        if _is_app(path):
            return _app_interfaces(path, env, f"{side} {spec}")
        files = sorted(path.glob("*.json"))
        if not files:
            fail(
                f"{side}: folder {spec} holds neither an app (lumi.toml) nor interface JSON", code=2
            )
        return read_interfaces(files, code=2)
    return _git_interfaces(spec, app_dir, env, side)


def _is_app(folder: Path) -> bool:
    from lumi.config import find_config
    from lumi.model.errors import ConfigError

    try:
        find_config(folder)
    except ConfigError:
        return False
    return True


def _app_interfaces(folder: Path, env: str | None, what: str) -> dict[str, ServiceInterface]:
    cmd = [sys.executable, "-m", "lumi.cli.main", "interface", "--app", str(folder.resolve())]
    if env:
        cmd += ["--env", env]
    out = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        lines = (out.stderr or out.stdout).strip().splitlines() or ["(no output)"]
        fail(f"{what}: cannot load its interfaces: {lines[-1].removeprefix('error: ')}", code=2)
    from lumi.model.interface import ServiceInterface

    data = json.loads(out.stdout)
    return {name: ServiceInterface.from_dict(entry) for name, entry in data.items()}


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, timeout=120)


def _git_interfaces(
    ref: str, app_dir: Path, env: str | None, side: str
) -> dict[str, ServiceInterface]:
    top = _git(app_dir, "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        fail(
            f"{side}: {ref!r} is not a file or folder, and {app_dir} is not in a git repository",
            code=2,
        )
    root = Path(top.stdout.decode().strip())
    if _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").returncode != 0:
        fail(f"{side}: {ref!r} is not a file, a folder or a git ref of {root}", code=2)
    archive = _git(root, "archive", "--format=tar", ref)
    if archive.returncode != 0:
        fail(f"{side}: git archive {ref} failed: {archive.stderr.decode().strip()}", code=2)
    import tarfile  # only here: it is a noticeable share of a `lumi --help`
    import tempfile

    relative = app_dir.resolve().relative_to(root.resolve())
    with tempfile.TemporaryDirectory(prefix="lumi-api-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(tmp, filter="data")
        folder = Path(tmp) / relative
        if not folder.is_dir() or not _is_app(folder):
            fail(f"{side}: {relative or '.'} at {ref} holds no app (lumi.toml)", code=2)
        return _app_interfaces(folder, env, f"{side} {ref}")


def _print_human(
    changes: list[Change],
    old: dict[str, ServiceInterface],
    new: dict[str, ServiceInterface],
    errors: list[str],
    stale: list[str],
) -> None:
    from rich.markup import escape

    from lumi.packaging.compat import Level

    marks = {Level.WIRE: "[red]✗ wire[/]", Level.SOURCE: "[yellow]✗ source[/]"}
    for name in sorted(set(old) | set(new)):
        mine = [c for c in changes if c.service == name]
        was = old[name].version if name in old else "-"
        now = new[name].version if name in new else "-"
        stdout.print(f"[bold cyan]{escape(name)}[/] {was} → {now}", highlight=False)
        if not mine:
            stdout.print("  [dim]no changes[/]")
        for change in sorted(mine, key=lambda c: (-c.level, c.path)):
            if change.allowed:
                mark = f"[green]✓ allowed[/] [dim]({change.level.label})[/]"
            else:
                mark = marks.get(change.level, "[green]✓ compatible[/]")
            note = f" [dim](allowed: {escape(change.reason)})[/]" if change.allowed else ""
            stdout.print(
                f"  {mark}  {escape(change.path)}  [bold]{change.kind}[/]: "
                f"{escape(change.message)}{note}",
                highlight=False,
            )
    breaking = [c for c in changes if c.breaking and not c.allowed]
    allowed = [c for c in changes if c.allowed]
    stdout.print(
        f"{len(breaking)} breaking, {len(allowed)} allowed, "
        f"{len(changes) - len(breaking) - len(allowed)} compatible change(s)",
        highlight=False,
    )
    for entry in stale:
        stdout.print(f"[yellow]warning:[/] allow-list entry matched nothing: {escape(entry)}")
    for error in errors:
        stdout.print(f"[bold red]error:[/] {escape(error)}", highlight=False)


def register(app: typer.Typer) -> None:
    api = typer.Typer(help="Work with service interfaces across versions.", no_args_is_help=True)
    app.add_typer(api, name="api")

    @api.command("diff")
    def diff_cmd(
        old: Annotated[str, typer.Argument(help="Interface JSON, app folder or git ref.")],
        new: Annotated[str, typer.Argument(help="Same kinds as OLD; default: the app.")] = "",
        app_dir: Annotated[
            Path, typer.Option("--app", "-a", help="The app folder (for git refs).")
        ] = Path("."),
        env: Annotated[str | None, typer.Option("--env", "-e", help="A named environment.")] = None,
        allow: Annotated[
            Path | None,
            typer.Option(help=f"Allow-list of accepted breaks (default: <app>/{ALLOW_FILE})."),
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
        strict: Annotated[
            bool, typer.Option(help="Fail on any breaking change not in the allow-list, even "
                               "with a major version bump.")
        ] = False,
    ) -> None:  # fmt: skip
        """Classify every change from OLD to NEW as wire-breaking, source-breaking or compatible.

        Exits 1 when a breaking change is neither in the allow-list nor announced by a major
        version bump (with --strict: when it is not in the allow-list), 2 when OLD, NEW or the
        allow-list cannot be read, 0 otherwise.
        """
        from lumi.packaging.compat import (
            apply_allow_list,
            diff_apps,
            load_allow_list,
            version_errors,
        )

        old_ifaces = load_side(old, app_dir, env, "OLD")
        new_ifaces = load_side(new or str(app_dir), app_dir, env, "NEW")
        allow_path = allow or app_dir / ALLOW_FILE
        allowances = load_allow_list(allow_path) if allow or allow_path.exists() else []
        changes, unused = apply_allow_list(diff_apps(old_ifaces, new_ifaces), allowances)
        errors = version_errors(old_ifaces, new_ifaces, changes)
        if strict:
            errors += [
                f"{c.path}: {c.kind} ({c.level.label}) is not in the allow-list"
                for c in changes
                if c.breaking and not c.allowed
            ]
        stale = [f"path={a.path!r} kind={a.kind!r}" for a in unused]
        if as_json:
            print_json(
                {
                    "ok": not errors,
                    "changes": [c.to_dict() for c in changes],
                    "errors": errors,
                    "unused_allowances": stale,
                    "versions": {
                        name: [
                            old_ifaces[name].version if name in old_ifaces else None,
                            new_ifaces[name].version if name in new_ifaces else None,
                        ]
                        for name in sorted(set(old_ifaces) | set(new_ifaces))
                    },
                }
            )
        else:
            _print_human(changes, old_ifaces, new_ifaces, errors, stale)
        if errors:
            raise typer.Exit(1)
