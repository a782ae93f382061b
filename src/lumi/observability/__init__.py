"""Runtime observability: logs, correlation, tracing and metrics."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def configure_logging(
    *, service: str, replica: int = 0, log_file: Path | None = None, level: str = "INFO"
) -> None:
    """Set up logging for one service process: to stderr, and to ``log_file`` when given."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    fmt = f"%(asctime)s %(levelname)s {service}[{replica}] %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, handlers=handlers, force=True)
