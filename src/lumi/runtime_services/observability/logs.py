"""Structured logs for every service process, with structlog.

One pipeline of processors serves both structlog loggers and standard-library ``logging`` records
(user code and libraries), through structlog's ``ProcessorFormatter``. Every line gets:

``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``msg``, ``service``, ``replica``, and — inside a
handled call — ``method`` (an RPC) or ``event`` (the topic of a delivered event, with
``handler``), ``correlation_id``, ``trace_id`` and ``span_id``, all read from the
:class:`~lumi.model.context.CallContext` contextvar. Secrets and sensitive parameters are masked
(:mod:`lumi.model.redact`).

Files and non-terminals get one JSON object per line; a terminal gets readable, coloured lines.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from lumi.model.context import context
from lumi.model.redact import redact_event
from lumi.paths import private_file
from lumi.runtime_services.observability._structlog import structlog
from lumi.runtime_services.observability.logroute import ServiceFiles, hosted

if TYPE_CHECKING:
    from structlog.typing import EventDict, Processor, WrappedLogger

_process: dict[str, Any] = {"service": None, "replica": None}
_HANDLER_MARK = "_lumi_handler"
_PLAIN_HANDLERS = (logging.StreamHandler, logging.FileHandler)


def add_call_context(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """Add the process's service/replica and the current call's ids to a log event."""
    ctx = context()
    here = hosted.get()  # a replica's task, where several share this process
    if ctx is None:
        service = here[0] if here is not None else _process["service"]
        if service is not None:
            event.setdefault("service", service)
    else:
        event.setdefault("service", ctx.service)
        if ctx.kind == "event":
            event.setdefault("event", ctx.topic)
            event.setdefault("handler", ctx.method)
        else:
            event.setdefault("method", ctx.method)
        meta = ctx.metadata
        if meta.correlation_id is not None:
            event.setdefault("correlation_id", meta.correlation_id)
        tp = meta.traceparent
        if tp is not None and len(tp) >= 55:
            event.setdefault("trace_id", tp[3:35])
            event.setdefault("span_id", tp[36:52])
    if here is not None:
        if ctx is None or ctx.service == here[0]:
            event.setdefault("replica", here[1])
    elif _process["replica"] is not None:
        event.setdefault("replica", _process["replica"])
    return event


def redact_secrets(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """Mask secret keys, and the sensitive parameters of the method being served."""
    ctx = context()
    return redact_event(event, ctx.sensitive if ctx is not None else ())


def _drop_color_message(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    event.pop("color_message", None)  # uvicorn duplicates its message with ANSI codes here
    return event


def _shared() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
        # structlog's message key is "event"; Lumi uses "event" for the topic being handled.
        structlog.processors.EventRenamer("msg"),
        _drop_color_message,
        add_call_context,
        redact_secrets,
    ]


_CONSOLE_HIDDEN = ("service", "replica", "trace_id", "span_id")


def _console_lean(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """On a terminal: the time of day only, and no ids a human does not read."""
    ts = event.get("ts")
    if isinstance(ts, str) and len(ts) >= 23:
        event["ts"] = ts[11:23]
    for key in _CONSOLE_HIDDEN:
        event.pop(key, None)
    return event


def _formatter(
    json_lines: bool, shared: list[Processor], colour: bool = True, lean: bool = False
) -> logging.Formatter:
    """JSON lines (files, pipes) or readable console lines (a terminal)."""
    renderer: Processor
    tail: list[Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if json_lines:
        renderer = structlog.processors.JSONRenderer(ensure_ascii=False, default=str)
        tail.append(structlog.processors.format_exc_info)
    else:
        if lean:
            tail.append(_console_lean)
        renderer = structlog.dev.ConsoleRenderer(
            colors=colour, event_key="msg", timestamp_key="ts", pad_event_to=24
        )
    return structlog.stdlib.ProcessorFormatter(
        processors=[*tail, renderer], foreign_pre_chain=shared
    )


def configure_logging(
    *,
    service: str | None = None,
    replica: int | None = 0,
    log_file: Path | None = None,
    level: str | int = "INFO",
    stream: TextIO | None = None,
    json: bool | None = None,
    colour: bool | None = None,
    lean: bool = False,
    service_files: Path | None = None,
    service_levels: dict[str, int] | None = None,
) -> None:
    """Set up logging for one service process.

    Lines go to ``stream`` (stderr by default: coloured on a terminal, JSON otherwise, or as
    ``json`` says; coloured unless ``colour`` is False or ``NO_COLOR`` is set) and, as JSON, to
    ``log_file`` when given. ``lean`` console lines leave out what a prefix already says
    (service, replica) and the trace ids, and show only the time of day. Standard-library
    loggers are routed through the same processors. Calling it again replaces the setup.

    Where replicas of several services share the process, ``service_files`` (the app folder)
    writes each line to its replica's own file instead (:mod:`.logroute`), dropping those
    below the service's level in ``service_levels``.
    """
    _process["service"] = service
    _process["replica"] = replica
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r} (use DEBUG, INFO, WARNING, ERROR)")
    out = stream if stream is not None else sys.stderr
    stream_json = json if json is not None else not _isatty(out)
    shared = _shared()
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.stdlib.PositionalArgumentsFormatter(),
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handlers: list[logging.Handler] = []
    console = logging.StreamHandler(out)
    if colour is None:
        colour = _isatty(out) and "NO_COLOR" not in os.environ
    console.setFormatter(_formatter(stream_json, shared, colour, lean))
    handlers.append(console)
    if log_file is not None:
        private_file(log_file)  # logs hold request data: 0600 in a 0700 folder
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(_formatter(True, shared))
        handlers.append(file_handler)
    if service_files is not None:
        routed = ServiceFiles(service_files, service_levels, default=numeric)
        routed.setFormatter(_formatter(True, shared))
        handlers.append(routed)
    root = logging.getLogger()
    for old in list(root.handlers):
        # Ours from a previous setup, or plain ones from logging.basicConfig; never a test
        # runner's capture handler.
        if getattr(old, _HANDLER_MARK, False) or type(old) in _PLAIN_HANDLERS:
            root.removeHandler(old)
            old.close()
    for handler in handlers:
        setattr(handler, _HANDLER_MARK, True)
        root.addHandler(handler)
    root.setLevel(numeric)
    # Chatty libraries stay at WARNING unless the app asks for DEBUG.
    for noisy in ("aiohttp.access", "uvicorn.access", "opentelemetry", "urllib3"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))


def reset_logging() -> None:
    """Undo :func:`configure_logging`: remove its handlers and structlog's configuration."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(logging.WARNING)
    structlog.reset_defaults()
    _process.update(service=None, replica=None)


def get_logger(name: str | None = None, **bound: Any) -> Any:
    """A structlog logger (``log.info("reserved", sku=sku)``) that writes through the setup."""
    return structlog.stdlib.get_logger(name, **bound)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def fields_of(event: MutableMapping[str, Any]) -> dict[str, Any]:
    """The event dict without structlog's private keys (for tests and tools)."""
    return {k: v for k, v in event.items() if not k.startswith("_")}
