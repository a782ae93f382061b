"""Service versions: where they live, how they are bumped, and the release check.

**The one source of truth is the service class**: ``version = "1.4.0"`` in its body (a
``lumi.Service`` without one is ``0.1.0``). Reflection copies it into the interface, so the
interface JSON, ``lumi api diff``, the generated files and the artifact all carry the version
the code declares. (``[app] version`` in ``lumi.toml`` is the app's, not a service's.)
``lumi version SERVICE PART`` rewrites that one string literal in the source file, leaving the
rest of the file byte for byte as it was.

The release check compares a service's interface with its last published version below the
new one through ``lumi api diff``'s engine (:mod:`lumi.packaging.compat`): a breaking change
not accepted by the allow-list (``lumi-api-allow.toml``) needs a major bump
(a minor bump below 1.0).
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

from lumi.config import AppConfig
from lumi.model.interface import ServiceInterface
from lumi.model.semver import VersionError, parse
from lumi.packaging.compat import (
    ALLOW_FILE,
    Change,
    apply_allow_list,
    diff_interfaces,
    load_allow_list,
)
from lumi.packaging.compat import version_errors as compat_version_errors
from lumi.packaging.introspect import ServiceEntry
from lumi.packaging.repository import Repository


@dataclasses.dataclass(frozen=True)
class ReleaseCheck:
    """The interface of ``service`` at ``version`` against the last release below it."""

    service: str
    version: str
    previous: str | None
    changes: list[Change]
    errors: list[str]

    @property
    def breaking(self) -> list[Change]:
        return [c for c in self.changes if c.breaking and not c.allowed]


async def check_release(
    repository: Repository, iface: ServiceInterface, app_dir: Path | None = None
) -> ReleaseCheck:
    """Diff ``iface`` with the newest published version below ``iface.version``."""
    previous = await repository.latest(iface.name, before=iface.version)
    if previous is None:
        return ReleaseCheck(iface.name, iface.version, None, [], [])
    old = (await repository.manifest(iface.name, previous)).manifest.service_interface()
    allow_path = (app_dir / ALLOW_FILE) if app_dir else None
    allowances = load_allow_list(allow_path) if allow_path and allow_path.exists() else []
    changes, _ = apply_allow_list(diff_interfaces(old, iface), allowances)
    errors = compat_version_errors({iface.name: old}, {iface.name: iface}, changes)
    return ReleaseCheck(iface.name, iface.version, previous, changes, errors)


def refusal(check: ReleaseCheck) -> VersionError:
    """One line: what breaks, against which release, and what to do instead."""
    if not check.breaking:
        return VersionError(f"{check.service} {check.version}: {check.errors[0]}")
    first = check.breaking[0] if check.breaking else None
    what = f" ({first.path}: {first.kind})" if first else ""
    was = parse(check.previous or "0.0.0").release
    needed = f"{was[0] + 1}.0.0" if was[0] > 0 else f"0.{was[1] + 1}.0"
    part = "major" if was[0] > 0 else "minor"
    return VersionError(
        f"{check.service} {check.version}: {len(check.breaking)} breaking change(s) since "
        f"{check.previous}{what} need version {needed} or later: lumi version {check.service} "
        f"{part}, or accept them in {ALLOW_FILE}"
    )


def bump_source(entry: ServiceEntry, new: str) -> Path:
    """Set the version of ``entry``'s class in its source file to ``new``; returns the file."""
    parse(new)
    file = Path(entry.file)
    if not file.is_file():
        raise VersionError(f"{entry.entry}: its source file {file} is not there to edit")
    text = file.read_text()
    cls_name = entry.entry.partition(":")[2]
    tree = ast.parse(text)
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls_name), None)
    if cls is None:
        raise VersionError(f"{file}: no top-level class {cls_name} to set the version on")
    lines = text.splitlines(keepends=True)
    literal = _version_literal(cls)
    if literal is not None:
        row, start, end = literal.lineno - 1, literal.col_offset, literal.end_col_offset or 0
        line = lines[row]
        quote = line[start] if line[start] in "'\"" else '"'
        lines[row] = f"{line[:start]}{quote}{new}{quote}{line[end:]}"
    else:
        first = cls.body[0]
        has_doc = isinstance(first, ast.Expr) and isinstance(
            getattr(first, "value", None), ast.Constant
        )
        # a decorated first statement starts at its first decorator, not at its ``def``
        start = min([first.lineno, *(d.lineno for d in getattr(first, "decorator_list", []))])
        anchor = (first.end_lineno or first.lineno) if has_doc else start - 1
        indent = " " * first.col_offset
        blank = "\n" if has_doc else ""
        lines.insert(anchor, f'{blank}{indent}version = "{new}"\n{"" if has_doc else chr(10)}')
    file.write_text("".join(lines))
    return file


def static_versions(config: AppConfig) -> dict[str, str]:
    """Each service's name and version read from its source without importing it (so an app
    whose code imports clients not yet installed can still be resolved)."""
    out: dict[str, str] = {}
    for ref in config.app.services:
        module, _, cls_name = ref.partition(":")
        base = config.root.joinpath(*module.split("."))
        file = next(
            (f for f in (base.with_suffix(".py"), base / "__init__.py") if f.is_file()), None
        )
        if file is None:
            raise VersionError(
                f"{config.path}: cannot find the source of {module!r} under {config.root}"
            )
        tree = ast.parse(file.read_text(), str(file))
        cls = next(
            (n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls_name), None
        )
        if cls is None:
            raise VersionError(f"{file}: no top-level class {cls_name}")
        literal = _version_literal(cls)
        name = _literal(cls, "name") or cls_name
        out[name] = str(literal.value) if literal is not None else "0.1.0"
    return out


def _literal(cls: ast.ClassDef, attribute: str) -> str | None:
    for node in cls.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id == attribute
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            return node.value.value
    return None


def _version_literal(cls: ast.ClassDef) -> ast.Constant | None:
    for node in cls.body:
        target: ast.expr | None = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        value = getattr(node, "value", None)
        if isinstance(target, ast.Name) and target.id == "version":
            if not (isinstance(value, ast.Constant) and isinstance(value.value, str)):
                raise VersionError(
                    f"{cls.name}.version is not a string literal; Lumi can only bump "
                    f'version = "X.Y.Z" written in the class'
                )
            if value.lineno != value.end_lineno:
                raise VersionError(f"{cls.name}.version spans lines; write it on one line")
            return value
    return None
