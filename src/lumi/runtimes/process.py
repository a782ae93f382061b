"""The local process runtime: one service replica in one OS process (what ``lumi run`` starts).

The supervisor (:mod:`lumi.runtimes.supervisor`) owns a socket per transport and passes them
in, so a restarted replica serves on the same ports (HTTP and Thrift connections wait in the
backlog instead of failing). It describes the replica in environment variables
(:class:`ReplicaSpec`); the replica serves on every transport of its ``rpc`` list, calls each
capability over the transport its config picks (the callee's first by default), reports "ready"
or one line of error on a pipe, serves until SIGTERM/SIGINT, then drains: it stops accepting,
lets in-flight calls finish (bounded by the grace period), runs ``shutdown`` and exits 0.
It also asks the kernel for SIGTERM if the supervisor dies, so no replica is ever orphaned.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from lumi.brokers import create_broker
from lumi.config import AppConfig, load_config
from lumi.model.errors import AppError, ConfigError, DefinitionError
from lumi.model.reflect import reflect
from lumi.pipeline import Handler, compose
from lumi.runtime_services.observability.logs import configure_logging
from lumi.runtime_services.resilience.ready import wait_ready
from lumi.runtimes import stack
from lumi.runtimes.host import Host
from lumi.transports import wiring
from lumi.transports.base import Channel, Server

log = logging.getLogger("lumi.process")

_PR_SET_PDEATHSIG = 1


@dataclasses.dataclass(frozen=True)
class ReplicaSpec:
    """What a replica process needs to know, carried in ``LUMI_*`` environment variables."""

    app_dir: str
    env: str | None
    service: str
    replica: int
    listeners: dict[str, int]  # transport → the fd of the socket the supervisor reserved
    ready_fd: int
    endpoints: dict[str, list[str]]
    parent_pid: int

    def to_environ(self) -> dict[str, str]:
        return {
            "LUMI_APP_DIR": self.app_dir,
            "LUMI_ENV": self.env or "",
            "LUMI_SERVICE": self.service,
            "LUMI_REPLICA": str(self.replica),
            "LUMI_LISTENERS": json.dumps(self.listeners),
            "LUMI_READY_FD": str(self.ready_fd),
            "LUMI_ENDPOINTS": json.dumps(self.endpoints),
            "LUMI_PARENT_PID": str(self.parent_pid),
        }

    @classmethod
    def from_environ(cls, environ: dict[str, str]) -> ReplicaSpec:
        return cls(
            app_dir=environ["LUMI_APP_DIR"],
            env=environ.get("LUMI_ENV") or None,
            service=environ["LUMI_SERVICE"],
            replica=int(environ["LUMI_REPLICA"]),
            listeners=json.loads(environ["LUMI_LISTENERS"]),
            ready_fd=int(environ["LUMI_READY_FD"]),
            endpoints=json.loads(environ["LUMI_ENDPOINTS"]),
            parent_pid=int(environ["LUMI_PARENT_PID"]),
        )


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGTERM us when the supervisor dies (and check it has not already)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:
        sys.exit(0)


class _Replica:
    def __init__(self, spec: ReplicaSpec, config: AppConfig) -> None:
        self.spec = spec
        self.config = config
        classes = {cls.name: cls for cls in config.load_services()}
        self.cls = classes[spec.service]
        self.interface = reflect(self.cls).interface
        binding = config.binding(spec.service)
        self.broker = create_broker(binding.events or "embedded", app_dir=config.root)
        self.runtime = stack.current()
        breakers = self.runtime.resilience(spec.service).breakers
        self.wire = wiring.options_for(
            config.root, config.name.replace("-", "_"), config.defaults.max_body,
            config.defaults.grace_period,
        )  # fmt: skip
        own = config.service(spec.service).capabilities
        self.targets: dict[str, list[str]] = {}
        self.channels: dict[str, Channel] = {}
        for name, urls in spec.endpoints.items():
            if name == spec.service or name not in self.interface.requires:
                continue
            where = f"{config.path}: services.{spec.service}.capabilities.{name}.transport"
            wanted = own[name].transport if name in own else None
            self.targets[name] = wiring.pick(name, urls, wanted, where)
            self.channels[name] = wiring.channel(
                self.targets[name], interface=reflect(classes[name]).interface,
                options=self.wire, breakers=breakers,
            )  # fmt: skip
        self.client_stack = stack.client_middlewares(spec.service)
        self.host = Host(
            [self.cls],
            broker=self.broker,
            channel_for=self._channel_for,
            app=config.name,
            middlewares=stack.server_middlewares(spec.service),
            external=self.interface.requires,
            publish_middlewares=stack.publish_middlewares,
        )

    def _channel_for(self, name: str) -> Handler:
        channel = self.channels.get(name)
        if channel is None:
            raise AppError(f"{self.spec.service} requires {name}, which has no endpoint")
        return compose(channel.call, self.client_stack)

    async def _wait_for_capabilities(self) -> None:
        """Wait (with backoff, one log line per attempt) until every capability is ready."""
        for name in self.interface.requires:
            urls = self.targets.get(name)
            if urls:
                await wait_ready(
                    lambda urls=urls: wiring.any_ready(urls),  # type: ignore[misc]
                    name,
                    timeout=self.runtime.ready_timeout,
                    logger=log,
                )

    async def _ready(self) -> tuple[bool, dict[str, Any]]:
        health = self.host.health()
        return bool(health["ok"]), health["services"]

    async def run(self, stop: asyncio.Event, report: Any) -> None:
        await self.broker.start()
        try:
            await self._wait_for_capabilities()
            await self.host.start()
            servers: list[Server] = []
            try:
                for transport, fd in self.spec.listeners.items():
                    server = wiring.server(
                        transport, self.host.dispatcher.handle,
                        sock=socket.socket(fileno=fd),
                        interfaces={self.interface.name: self.interface}, options=self.wire,
                        ready=self._ready, routes={"/metrics": self.runtime.metrics.route},
                    )  # fmt: skip
                    await server.start()
                    servers.append(server)
                report({"ready": True, "pid": os.getpid()})
                log.info(
                    "%s[%d] serving on %s",
                    self.spec.service,
                    self.spec.replica,
                    " ".join(server.address for server in servers),
                )
                await stop.wait()
                log.info("%s[%d] draining", self.spec.service, self.spec.replica)
                await asyncio.gather(*(server.aclose() for server in servers))
            finally:
                await self.host.stop()
        finally:
            for channel in self.channels.values():
                await channel.aclose()
            await self.broker.aclose()
            self.runtime.shutdown()  # flush spans


def main() -> None:
    """Entry point of a replica process (``python -m lumi.runtimes.process``)."""
    spec = ReplicaSpec.from_environ(dict(os.environ))
    _die_with_parent(spec.parent_pid)
    ready = os.fdopen(spec.ready_fd, "w", buffering=1)

    def report(message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            ready.write(json.dumps(message) + "\n")
            ready.flush()

    app_dir = Path(spec.app_dir)
    try:
        config = load_config(app_dir, spec.env)
    except ConfigError as exc:
        configure_logging(service=spec.service, replica=spec.replica)
        report({"error": str(exc)})
        sys.exit(1)
    # Lines on stderr go to `lumi run`'s terminal: readable; the log file gets JSON lines.
    stack.setup_process(
        config,
        spec.service,
        replica=spec.replica,
        level=os.environ.get("LUMI_LOG_LEVEL") or None,
        stream_json=os.environ.get("LUMI_LOG_JSON") == "1",
        colour=False,
        lean=True,  # `lumi run` prefixes each line with the replica's name
    )
    try:
        _run_loop(_serve(spec, config, report))
    except (ConfigError, AppError, DefinitionError) as exc:
        report({"error": str(exc)})
        sys.exit(1)
    except Exception as exc:
        log.exception("%s[%d] failed", spec.service, spec.replica)
        report({"error": f"{type(exc).__name__}: {exc}"})
        sys.exit(1)


def _run_loop(coro: Any) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(coro)
    else:
        uvloop.run(coro)


async def _serve(spec: ReplicaSpec, config: AppConfig, report: Any) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await _Replica(spec, config).run(stop, report)


if __name__ == "__main__":
    main()
