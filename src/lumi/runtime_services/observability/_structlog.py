"""structlog, imported without the optional libraries it would load and Lumi does not use.

structlog's dev module imports rich (with pygments), colorama and greenlet when they are
installed — for pretty tracebacks, Windows colours and greenlet-local context — ~5 MiB and ~90
modules in every replica (``bench/replica_bench.py``). Lumi's lines need none of them (plain
tracebacks; ANSI colours need no colorama on POSIX): they are hidden while structlog is first
imported, and importable again right after (an app may use rich itself).
"""

from __future__ import annotations

import sys

_NOT_FOR_STRUCTLOG = ("rich", "colorama", "greenlet", "better_exceptions")

if "structlog" not in sys.modules:
    _hidden = [name for name in _NOT_FOR_STRUCTLOG if name not in sys.modules]
    for _name in _hidden:
        sys.modules[_name] = None  # type: ignore[assignment]
    try:
        import structlog
    finally:
        for _name in _hidden:
            del sys.modules[_name]

import structlog  # noqa: E402  (bound here either way)

__all__ = ["structlog"]
