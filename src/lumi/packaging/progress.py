"""Transfer bars for pushes and pulls: a :class:`~lumi.packaging.store.base.Progress` drawn
with rich (one bar per blob: bytes, speed, time left)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from lumi.packaging.store.base import Progress as TransferProgress


@contextlib.contextmanager
def transfer_bars(console: Console, *, enabled: bool = True) -> Iterator[TransferProgress]:
    """Bars on ``console`` while the block runs (nothing when ``enabled`` is false or the
    console is not a terminal)."""
    if not enabled or not console.is_terminal:
        yield lambda description, total: lambda n: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=console, transient=False) as bars:

        def start(description: str, total: int) -> Callable[[int], None]:
            task = bars.add_task(description, total=total)
            return lambda n: bars.advance(task, n)

        yield start
