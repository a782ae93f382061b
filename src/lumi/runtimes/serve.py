"""``lumi serve SERVICE``: one replica of one service in this process — the entry point of every
runtime but ``inproc``.

Under a supervisor (the process and container runtimes) the replica gets its
:class:`~lumi.runtimes.base.ReplicaSpec` and listening sockets from ``lumi run``
(``LUMI_REPLICA_SPEC``, ``LUMI_LISTEN_FDS``), reports "ready" (or one line of error) on the
pipe ``LUMI_READY_FD``, and ends when the supervisor does (``LUMI_PARENT_PID``).

On its own (a container, a Kubernetes pod, a terminal) it binds its own sockets and finds its
capabilities and broker from the variables of :mod:`lumi.runtimes.environment`.

Either way it serves until SIGTERM or SIGINT, then drains in-flight calls and exits 0. ``python
-m lumi.runtimes.serve SERVICE`` is the same command without the CLI's import time (the process
runtime starts replicas with it).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lumi import transports
from lumi.config import AppConfig, load_config
from lumi.model.errors import AppError, ConfigError, DefinitionError
from lumi.model.interface import interface
from lumi.runtimes import environment as envvars
from lumi.runtimes import stack
from lumi.runtimes._spares import wait_for_assignment
from lumi.runtimes.base import ReplicaSpec

log = logging.getLogger("lumi.serve")

SPEC = "LUMI_REPLICA_SPEC"
LISTEN_FDS = "LUMI_LISTEN_FDS"
READY_FD = "LUMI_READY_FD"
PARENT_PID = "LUMI_PARENT_PID"
SPARE_FD = "LUMI_SPARE_FD"

_PR_SET_PDEATHSIG = 1

Report = Callable[[dict[str, Any]], None]


def main(argv: list[str] | None = None) -> None:
    """``python -m lumi.runtimes.serve SERVICE [--app DIR] [--env ENV] [--host H] [--port P]``."""
    import argparse  # not in a replica forked from the template, which never parses arguments

    parser = argparse.ArgumentParser(prog="lumi serve", description=__doc__.split("\n")[0])
    parser.add_argument("service", nargs="?" if SPARE_FD in os.environ else None)
    parser.add_argument("--app", "-a", default=".")
    parser.add_argument("--env", "-e", default=None)
    parser.add_argument("--host", default=None)
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)
    service = args.service
    if SPARE_FD in os.environ:  # a warm spare of the process runtime: told later what to be
        _die_with_parent(int(os.environ[PARENT_PID]))
        wait_for_assignment()
        spec = ReplicaSpec.from_json(os.environ[SPEC])
        os.chdir(spec.app_dir)
        service = spec.service
    sys.exit(serve(service, app_dir=args.app, env=args.env, host=args.host, port=args.port))


def serve(
    service: str,
    *,
    app_dir: str | Path = ".",
    env: str | None = None,
    host: str | None = None,
    port: int | None = None,
    environ: Mapping[str, str] = os.environ,
) -> int:
    """Serve one replica of ``service`` until SIGTERM/SIGINT; the exit code."""
    # As a container's PID 1, a signal without a handler is ignored: end on SIGTERM even
    # before the event loop takes it over to drain.
    signal.signal(signal.SIGTERM, _terminated)
    supervised = SPEC in environ
    report = _reporter(environ)
    if PARENT_PID in environ:
        _die_with_parent(int(environ[PARENT_PID]))
    try:
        if supervised:
            spec = ReplicaSpec.from_json(environ[SPEC])
            if spec.service != service:
                raise AppError(f"asked to serve {service} with the spec of {spec.service}")
            config = _config(spec.app_dir, spec.env, environ)
            if spec.node:  # what the service reads to know its node
                os.environ[envvars.NODE] = spec.node
            fds: dict[str, int] = json.loads(environ[LISTEN_FDS])
            sockets = {name: socket.socket(fileno=fd) for name, fd in fds.items()}
        else:
            config = _config(app_dir, env or environ.get(envvars.ENV), environ)
            spec, sockets = _standalone(config, service, host, port, environ)
    except (ConfigError, AppError, DefinitionError) as exc:
        return _failed(str(exc), report, supervised)
    except OSError as exc:
        return _failed(f"cannot listen: {exc.strerror or exc}", report, supervised)
    # Under lumi run, lines on stderr go to its terminal (prefixed with the replica's name).
    services = stack.setup_process(
        config,
        spec.service,
        replica=spec.replica,
        level=environ.get("LUMI_LOG_LEVEL") or None,
        # Readable lines for lumi run's terminal; on its own, JSON unless on a terminal.
        stream_json=True
        if environ.get("LUMI_LOG_JSON") == "1"
        else (False if supervised else None),
        colour=False if supervised else None,
        lean=supervised,
    )
    try:
        run_loop(_serve(spec, config, sockets, services, report, environ))
    except (ConfigError, AppError, DefinitionError) as exc:
        return _failed(str(exc), report, supervised)
    except Exception as exc:
        log.exception("%s failed", spec.name)
        return _failed(f"{type(exc).__name__}: {exc}", report, supervised)
    return 0


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _config(app_dir: str | Path, env: str | None, environ: Mapping[str, str]) -> AppConfig:
    config = load_config(Path(app_dir), env)
    events = environ.get(envvars.EVENTS)
    return envvars.with_events(config, events) if events else config


def _standalone(
    config: AppConfig,
    service: str,
    host: str | None,
    port: int | None,
    environ: Mapping[str, str],
) -> tuple[ReplicaSpec, dict[str, socket.socket]]:
    """The spec and sockets of a replica started without a supervisor."""
    classes = {cls.name: cls for cls in config.load_services()}
    if service not in classes:
        raise AppError(
            f"no service {service!r} in {config.path} (services: {', '.join(sorted(classes))})"
        )
    endpoints = envvars.endpoints_from(environ, classes)
    missing = [name for name in interface(classes[service]).requires if name not in endpoints]
    if missing:
        hint = " ".join(f"{envvars.endpoints_variable(n)}=http://HOST:PORT" for n in missing)
        raise ConfigError(
            f"{service} requires {', '.join(missing)}: say where with {hint} "
            f"(or {envvars.ENDPOINTS} as JSON)"
        )
    names = config.binding(service).rpc or ["http"]
    ports = envvars.ports_from(environ, names, config.service(service).port)
    if port is not None:
        ports[names[0]] = port
    address = host or environ.get(envvars.HOST) or config.defaults.host
    sockets: dict[str, socket.socket] = {}
    try:
        for name in names:
            sockets[name] = transports.get(name).bind(address, ports[name])
    except BaseException:
        for sock in sockets.values():
            sock.close()
        raise
    own = [transports.get(n).endpoint_of(s) for n, s in sockets.items()]
    replica = environ.get(envvars.REPLICA, "0")
    spec = ReplicaSpec(
        app_dir=str(config.root),
        env=config.environment,
        service=service,
        replica=int(replica) if replica.isdigit() else 0,
        endpoints={**endpoints, service: own},
        node=environ.get(envvars.NODE) or None,
    )
    return spec, sockets


def _failed(message: str, report: Report, supervised: bool) -> int:
    report({"error": message})
    if not supervised:
        sys.stderr.write(f"lumi serve: error: {message}\n")
    return 1


def _reporter(environ: Mapping[str, str]) -> Report:
    """Where "ready" or the error goes: the supervisor's pipe, if there is one."""
    fd = environ.get(READY_FD)
    if fd is None:
        return lambda message: None
    stream = os.fdopen(int(fd), "w", buffering=1)

    def report(message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError, ValueError):
            stream.write(json.dumps(message) + "\n")
            stream.flush()

    return report


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGTERM us when the supervisor dies (and check it has not already)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:
        sys.exit(0)


def settle_gc() -> None:
    """Once a replica is ready, take what start-up made (modules, schemas, validators: tens of
    thousands of objects that live as long as the process) out of the cycle collector's view,
    and collect the young generation less often.

    Why: on bench/hop_bench.py a replica calling another one spent ~6% of its CPU in the cycle
    collector — full collections walking the start-up objects, and young collections set off
    by nothing more than the objects of the calls in flight (32 calls awaiting their callee
    hold more than the default threshold of 700). Calls make no cycles of their own, so
    collecting less often costs little memory.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def run_loop(coro: Any) -> None:
    """Run ``coro`` on uvloop where it is installed."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(coro)
    else:
        uvloop.run(coro)


async def _serve(
    spec: ReplicaSpec,
    config: AppConfig,
    sockets: dict[str, socket.socket],
    services: stack.RuntimeServices,
    report: Report,
    environ: Mapping[str, str],
) -> None:
    from lumi.runtimes.replica import ReplicaRunner

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    endpoints_file = environ.get(envvars.ENDPOINTS_FILE)
    mine = [transports.get(n).endpoint_of(s) for n, s in sockets.items()]

    def ready() -> None:
        if endpoints_file:
            Path(endpoints_file).write_text(json.dumps(mine))
        settle_gc()
        report({"ready": True, "pid": os.getpid()})

    try:
        runner = ReplicaRunner(spec, config, sockets, services)
        await runner.run(stop, ready)
    finally:
        services.shutdown()  # flush spans


if __name__ == "__main__":
    main()
