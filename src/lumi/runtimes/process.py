"""The local process runtime: one replica in one OS process (the default of ``lumi run``).

The supervisor binds each replica's sockets and passes them in, so a restarted replica serves
on the same ports and connections wait in the backlog instead of failing. The child gets its
:class:`~lumi.runtimes.base.ReplicaSpec` and socket fds in ``LUMI_*`` environment variables
and reports "ready" (or one line of error) on a pipe; it serves until SIGTERM/SIGINT, then
drains and exits 0. It runs in its own session (a terminal's Ctrl-C reaches only the
supervisor, which orders the stop) and asks the kernel for SIGTERM when the supervisor dies,
so no replica is ever orphaned.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from lumi.config import AppConfig, load_config
from lumi.model.errors import AppError, ConfigError, DefinitionError
from lumi.runtimes import stack
from lumi.runtimes._spares import SparePool, wait_for_assignment
from lumi.runtimes.base import Output, Replica, ReplicaSpec, Runtime, StartError

log = logging.getLogger("lumi.process")

_PR_SET_PDEATHSIG = 1


class ProcessReplica(Replica):
    """A replica process started by :class:`ProcessRuntime`."""

    def __init__(self, proc: asyncio.subprocess.Process, ready_fd: int, output: Output) -> None:
        self.proc = proc
        self.pid = proc.pid
        self._ready_fd = ready_fd
        self._output = output
        self._tail: list[str] = []
        self._pumps = [
            asyncio.create_task(self._pump(stream))
            for stream in (proc.stdout, proc.stderr)
            if stream is not None
        ]

    async def _pump(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            text = line.decode("utf-8", "replace").rstrip("\n")
            self._tail = [*self._tail[-19:], text]
            self._output(text)

    async def ready(self, timeout: float) -> None:
        message = await self._read_report(timeout)
        if "error" in message:
            await self.kill()
            raise StartError(str(message["error"]))

    async def _read_report(self, timeout: float) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(self._ready_fd, "rb", 0)
        )
        try:
            async with asyncio.timeout(timeout):
                line = await reader.readline()
            if line:
                result: dict[str, Any] = json.loads(line)
                return result
            code = await self.proc.wait()
            await asyncio.gather(*self._pumps)  # its last words
            cause = self._tail[-1] if self._tail else "no output"
            return {"error": f"exited with code {code} before it was ready ({cause})"}
        except TimeoutError:
            return {"error": f"not ready after {timeout:g}s (defaults.start_timeout)"}
        finally:
            transport.close()

    async def wait(self) -> int:
        code = await self.proc.wait()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        return code

    async def stop(self, grace: float) -> None:
        if self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(grace + 5):
                await self.proc.wait()
        except TimeoutError:
            self._output(f"did not stop within {grace + 5:g}s; killing it")
            await self.kill()

    async def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


class ProcessRuntime(Runtime):
    """Runs each replica as ``python -m lumi.runtimes.process`` in the app folder."""

    name: ClassVar[str] = "process"

    def __init__(self, environment: Mapping[str, str] | None = None) -> None:
        self.environment = dict(environment or {})
        self._spares: SparePool | None = None

    def keep_warm(self, count: int) -> None:
        """Keep ``count`` spare processes with Lumi imported, so a start takes ~0.1 s."""
        if self._spares is None:
            self._spares = SparePool(count)
        self._spares.size = count
        self._spares.fill()

    async def warm(self) -> None:
        """Wait until the spares asked for by :meth:`keep_warm` are ready."""
        if self._spares is not None:
            await self._spares.ready()

    async def aclose(self) -> None:
        if self._spares is not None:
            await self._spares.aclose()
            self._spares = None

    async def start(
        self, spec: ReplicaSpec, sockets: Mapping[str, socket.socket], output: Output
    ) -> Replica:
        read_fd, write_fd = os.pipe()
        fds = {name: sock.fileno() for name, sock in sockets.items()}
        own = {
            **self.environment,
            **spec.environment,
            "LUMI_REPLICA_SPEC": spec.to_json(),
            "LUMI_PARENT_PID": str(os.getpid()),
        }
        spare = self._spares.take() if self._spares is not None else None
        if spare is not None:
            try:
                spare.assign(own, {"ready": write_fd, **fds})
            finally:
                os.close(write_fd)
            return ProcessReplica(spare.proc, read_fd, output)
        environ = {
            **os.environ,
            **own,
            "LUMI_LISTEN_FDS": json.dumps(fds),
            "LUMI_READY_FD": str(write_fd),
            "PYTHONUNBUFFERED": "1",
        }
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "lumi.runtimes.process",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(*fds.values(), write_fd),
                env=environ,
                cwd=spec.app_dir,
                process_group=0,
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        return ProcessReplica(proc, read_fd, output)


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGTERM us when the supervisor dies (and check it has not already)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:
        sys.exit(0)


def main() -> None:
    """Entry point of a replica process (``python -m lumi.runtimes.process``)."""
    if "LUMI_SPARE_FD" in os.environ:  # a warm spare: wait to be told which replica to be
        _die_with_parent(int(os.environ["LUMI_PARENT_PID"]))
        wait_for_assignment()
    spec = ReplicaSpec.from_json(os.environ["LUMI_REPLICA_SPEC"])
    os.chdir(spec.app_dir)
    fds: dict[str, int] = json.loads(os.environ["LUMI_LISTEN_FDS"])
    _die_with_parent(int(os.environ["LUMI_PARENT_PID"]))
    ready = os.fdopen(int(os.environ["LUMI_READY_FD"]), "w", buffering=1)

    def report(message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            ready.write(json.dumps(message) + "\n")
            ready.flush()

    try:
        config = load_config(Path(spec.app_dir), spec.env)
    except ConfigError as exc:
        report({"error": str(exc)})
        sys.exit(1)
    # Lines on stderr go to `lumi run`'s terminal: readable; the log file gets JSON lines.
    services = stack.setup_process(
        config,
        spec.service,
        replica=spec.replica,
        level=os.environ.get("LUMI_LOG_LEVEL") or None,
        stream_json=os.environ.get("LUMI_LOG_JSON") == "1",
        colour=False,
        lean=True,  # `lumi run` prefixes each line with the replica's name
    )
    sockets = {name: socket.socket(fileno=fd) for name, fd in fds.items()}
    try:
        _run_loop(_serve(spec, config, sockets, services, report))
    except (ConfigError, AppError, DefinitionError) as exc:
        report({"error": str(exc)})
        sys.exit(1)
    except Exception as exc:
        log.exception("%s failed", spec.name)
        report({"error": f"{type(exc).__name__}: {exc}"})
        sys.exit(1)


def _run_loop(coro: Any) -> None:
    try:
        import uvloop
        if os.environ.get("XX_NO_UVLOOP"): raise ImportError
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(coro)
    else:
        uvloop.run(coro)


async def _serve(
    spec: ReplicaSpec,
    config: AppConfig,
    sockets: dict[str, socket.socket],
    services: stack.RuntimeServices,
    report: Any,
) -> None:
    from lumi.runtimes.replica import ReplicaRunner

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        runner = ReplicaRunner(spec, config, sockets, services)
        await runner.run(stop, lambda: report({"ready": True, "pid": os.getpid()}))
    finally:
        services.shutdown()  # flush spans


if __name__ == "__main__":
    main()
