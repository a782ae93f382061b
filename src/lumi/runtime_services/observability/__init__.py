"""Runtime observability: structured logs, correlation, tracing and metrics.

* :mod:`~lumi.runtime_services.observability.logs` — structlog for the process (JSON in files,
  colour on a terminal), ``configure_logging`` and ``get_logger`` (also ``lumi.get_logger``);
* :mod:`~lumi.runtime_services.observability.tracing` — W3C trace context and spans;
* :mod:`~lumi.runtime_services.observability.metrics` — Prometheus metrics and ``/metrics``;
* :mod:`~lumi.runtime_services.observability.spanstore` — the SQLite span store behind
  ``lumi trace``;
* :mod:`~lumi.runtime_services.observability.logfiles` — reading, merging and filtering JSON
  log files;
* :mod:`~lumi.runtime_services.observability.middleware` — the observers on the pipeline.

The package itself imports nothing, so importing one part does not load the others.
"""
