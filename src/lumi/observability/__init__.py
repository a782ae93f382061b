"""Runtime observability: structured logs, correlation, tracing and metrics.

* :func:`configure_logging` — structlog for the process (JSON in files, colour on a terminal);
* :mod:`lumi.observability.tracing` — W3C trace context and OpenTelemetry spans;
* :mod:`lumi.observability.metrics` — Prometheus metrics and the ``/metrics`` body;
* :mod:`lumi.observability.spanstore` — the local SQLite span store behind ``lumi trace``;
* :mod:`lumi.observability.logfiles` — reading, merging and filtering JSON log files.
"""

from __future__ import annotations

from lumi.observability.logs import configure_logging, get_logger, reset_logging
from lumi.observability.redact import REDACTED, redact

__all__ = ["REDACTED", "configure_logging", "get_logger", "redact", "reset_logging"]
