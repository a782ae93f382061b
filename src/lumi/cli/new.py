"""``lumi new APP [--template NAME]``: scaffold an app that passes its tests and runs at once.

Templates are folders of package data under ``lumi/starters/``; each file ending in ``.tmpl``
is copied with ``{{app}}`` (the app name) and ``{{pkg}}`` (its Python package) filled in, and a
``__pkg__`` folder becomes the package.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lumi.cli.output import fail, stdout
from lumi.model.suggest import close_matches

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_RENAMES = {"gitignore": ".gitignore"}


def templates() -> list[str]:
    """The names of the templates that ship with Lumi."""
    from importlib import resources

    root = resources.files("lumi") / "starters"
    return sorted(t.name for t in root.iterdir() if t.is_dir() and not t.name.startswith("_"))


def package_name(app: str) -> str:
    """``my-shop`` → ``my_shop``: the app's Python package."""
    name = app.lower().replace("-", "_")
    return f"{name}_app" if keyword.iskeyword(name) else name


def scaffold(target: Path, app: str, template: str = "basic") -> list[Path]:
    """Write the template's files into ``target`` (which must not hold files yet)."""
    from importlib import resources

    source = resources.files("lumi") / "starters" / template
    written: list[Path] = []
    values = {"{{app}}": app, "{{pkg}}": package_name(app)}

    def copy(folder: Traversable, into: Path) -> None:
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            name = entry.name.replace("__pkg__", values["{{pkg}}"])
            if entry.is_dir():
                if name != "__pycache__":
                    copy(entry, into / name)
                continue
            if not name.endswith(".tmpl"):
                continue
            name = name.removesuffix(".tmpl")
            text = entry.read_text(encoding="utf-8")
            for key, value in values.items():
                text = text.replace(key, value)
            path = into / _RENAMES.get(name, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            written.append(path)

    copy(source, target)
    return written


def register(app: typer.Typer) -> None:
    @app.command("new")
    def new_cmd(
        name: Annotated[str, typer.Argument(metavar="APP", help="The app's name (and folder).")],
        template: Annotated[
            str, typer.Option("--template", "-t", help="What to start from.")
        ] = "basic",
        directory: Annotated[
            Path | None, typer.Option("--dir", help="Where to create it (default: ./APP).")
        ] = None,
    ) -> None:
        """Create a new app: two services, an event, tests, lumi.toml and a README."""
        if not _NAME.match(name):
            fail(
                f"{name!r} is not a usable app name: start with a letter, then letters, digits, "
                "'-' or '_' (e.g. my-shop)"
            )
        known = templates()
        if template not in known:
            match = close_matches(template, known, n=1)
            hint = f"; did you mean {match[0]!r}?" if match else ""
            fail(f"no template {template!r}{hint} (templates: {', '.join(known)})")
        target = directory if directory is not None else Path(name)
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            fail(f"{target} already exists and is not empty; choose another name or --dir")
        written = scaffold(target, name, template)
        stdout.print(f"created {name!r} in {target} ({len(written)} files) from {template!r}:")
        for path in written:
            stdout.print(f"  {path.relative_to(target)}", highlight=False)
        stdout.print(
            f"\nnext:\n  cd {target}\n  python -m pytest      # its tests\n"
            "  lumi run --reload     # run it; prints the dashboard URL",
            highlight=False,
        )
