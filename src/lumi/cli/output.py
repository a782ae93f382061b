"""How the CLI prints: JSON (pretty on a terminal), tables, and one-line errors.

``stdout`` and ``stderr`` are rich consoles created on first use: a command that prints one
error line or one JSON line never imports rich (the CLI starts in a fraction of the time).
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any, NoReturn, cast

if TYPE_CHECKING:
    from rich.console import Console


class _LazyConsole:
    """Stands in for a rich ``Console``; the real one is made on first attribute access."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return getattr(self._console, name)


stdout = cast("Console", _LazyConsole(soft_wrap=True))
stderr = cast("Console", _LazyConsole(stderr=True, soft_wrap=True))


def fail(message: str, *, code: int = 1) -> NoReturn:
    """Print ``error: message`` on stderr (the word in bold red on a terminal) and exit."""
    label = "error:"
    if _colour(sys.stderr):
        label = f"\x1b[1;31m{label}\x1b[0m"
    sys.stderr.write(f"{label} {message}\n")
    sys.stderr.flush()
    sys.exit(code)


def print_json(value: Any) -> None:
    """Pretty, coloured JSON on a terminal; compact JSON on one line otherwise."""
    if sys.stdout.isatty():
        stdout.print_json(json.dumps(value, ensure_ascii=False))
    else:
        sys.stdout.write(json.dumps(value, ensure_ascii=False) + "\n")
        sys.stdout.flush()


_STYLES = {"bold": "1", "bold cyan": "1;36", "dim": "2", "yellow": "33", "magenta": "35",
           "green": "32"}  # fmt: skip


def styled(text: str, style: str) -> str:
    """``text`` in ``style`` (one of a few) when stdout is a colour terminal, else as is: the
    commands that print a listing (``lumi ls``) need no rich for it."""
    if not text or not _colour(sys.stdout):
        return text
    return f"\x1b[{_STYLES[style]}m{text}\x1b[0m"


def say(text: str) -> None:
    """One line on stdout."""
    sys.stdout.write(text + "\n")


def _colour(stream: Any) -> bool:
    try:
        return bool(stream.isatty()) and "NO_COLOR" not in os.environ
    except (AttributeError, ValueError):
        return False
