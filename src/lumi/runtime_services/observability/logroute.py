"""Whose log line is it? The service replica a line belongs to, when several share a process.

A service process logs as one service (:func:`~lumi.runtime_services.observability.logs.
configure_logging`). When replicas of several services run in one process (``lumi run
--inproc``, the ``inproc`` runtime), each replica's task sets :data:`hosted`, which every task
it starts inherits; a line logged there carries that service and replica, and
:class:`ServiceFiles` writes it to that replica's own file (``<service>.log``,
``<service>-<n>.log``), exactly as if it ran in a process of its own — so ``lumi logs -s`` and
the dashboard see services, not the app.
"""

from __future__ import annotations

import contextvars
import logging
from pathlib import Path
from typing import IO

from lumi.model.context import context
from lumi.paths import AppPaths

hosted: contextvars.ContextVar[tuple[str, int] | None] = contextvars.ContextVar(
    "lumi_hosted_replica", default=None
)
"""``(service, replica)`` of the replica whose task is running, where several share a process."""


def source() -> tuple[str | None, int | None]:
    """The service and replica the current code runs for: the call being handled, else the
    hosting replica's task, else (None, None)."""
    here = hosted.get()
    ctx = context()
    if ctx is not None:
        replica = here[1] if here is not None and here[0] == ctx.service else None
        return ctx.service, replica
    if here is not None:
        return here
    return None, None


class ServiceFiles(logging.Handler):
    """Writes each record to the log file of the replica it belongs to (see :func:`source`);
    records of no replica (the supervisor's own) go to no file. ``levels`` are per-service
    minimum levels (``services.X.log_level``), ``default`` that of every other service."""

    def __init__(
        self, app_dir: Path, levels: dict[str, int] | None = None, default: int = logging.NOTSET
    ) -> None:
        super().__init__()
        self.paths = AppPaths(app_dir)
        self.levels = dict(levels or {})
        self.default = default
        self._files: dict[tuple[str, int], IO[str]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        service, replica = source()
        if service is None or record.levelno < self.levels.get(service, self.default):
            return
        key = (service, replica or 0)
        try:
            line = self.format(record)
            stream = self._files.get(key)
            if stream is None:
                path = self.paths.log_file(*key)
                path.parent.mkdir(parents=True, exist_ok=True)
                stream = self._files[key] = path.open("a", encoding="utf-8")
            stream.write(line + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self.acquire()
        try:
            for stream in self._files.values():
                stream.close()
            self._files.clear()
        finally:
            self.release()
        super().close()
