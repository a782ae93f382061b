"""How the CLI prints: JSON (pretty on a terminal), tables, and one-line errors."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

from rich.console import Console
from rich.markup import escape

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)


def fail(message: str, *, code: int = 1) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    stderr.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False)
    sys.exit(code)


def print_json(value: Any) -> None:
    """Pretty, coloured JSON on a terminal; compact JSON on one line otherwise."""
    if sys.stdout.isatty():
        stdout.print_json(json.dumps(value, ensure_ascii=False))
    else:
        sys.stdout.write(json.dumps(value, ensure_ascii=False) + "\n")
        sys.stdout.flush()
