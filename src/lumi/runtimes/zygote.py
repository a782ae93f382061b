"""A template process that forks replicas: ``lumi serve`` without the interpreter's start-up.

Most of a replica's cold start is importing Lumi and its libraries (measured: ~95% of the time
to ready). The template — ``python -m lumi.runtimes.zygote``, started once — imports them and
waits. Each replica is a ``fork()`` of it that runs :func:`lumi.runtimes.serve.serve` with its
own environment, working folder, sockets and readiness pipe (passed over a Unix socket with
``SCM_RIGHTS``), so it starts in tens of milliseconds. The app's own modules are *not*
imported by the template: every replica imports the app's current code, as a fresh process
would. The template starts no thread and no event loop before forking.

The template reports each child's exit status; it dies with the process that started it, and
its children die with it. :class:`ForkedProcess` gives a child the shape of an asyncio
subprocess, so :class:`~lumi.runtimes.process.ProcessReplica` handles it as any replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from typing import Any, ClassVar

from lumi.runtimes import _launch, serve
from lumi.runtimes.base import Output, Replica, ReplicaSpec, Runtime
from lumi.runtimes.process import ProcessReplica

CONTROL_FD = _launch.CONTROL_FD
_MAX_FDS = 64
_PRELOAD = (
    "lumi.runtimes.replica",
    "lumi.runtimes.stack",
    "lumi.transports.http",
    "lumi.brokers.embedded",
    "lumi.brokers.memory",
    "lumi.pipeline.client",
    "lumi.pipeline.dispatch",
    # What every replica imported after the fork (~15 ms of each start, measured): the span
    # store, pydantic's TypeAdapter (the wire adapters), service declarations.
    "lumi.runtime_services.observability.spanstore",
    "lumi.model.declare",
    "pydantic.type_adapter",
)
_PRELOAD_IF_INSTALLED = ("uvloop",)  # the event loop serve.run_loop prefers (Linux, macOS)


# -- the template process ----------------------------------------------------------------------


def main() -> None:
    """``python -m lumi.runtimes.zygote``: preload, then fork a replica per request."""
    import importlib

    control = socket.socket(fileno=int(os.environ.pop(CONTROL_FD)))
    serve._die_with_parent(int(os.environ[serve.PARENT_PID]))
    for module in _PRELOAD:
        importlib.import_module(module)
    for module in _PRELOAD_IF_INSTALLED:
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    _settle()
    children: set[int] = set()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ, "control")
    selector.register(wake_r, selectors.EVENT_READ, "child")
    send(control, {"ready": True, "pid": os.getpid()})
    while True:
        for key, _ in selector.select():
            if key.data == "child":
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 4096)
                _reap(control, children)
                continue
            data, fds, _, _ = socket.recv_fds(control, 1 << 20, _MAX_FDS)
            if not data:  # the runtime closed its end: it is gone
                for pid in children:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGTERM)
                return
            request = json.loads(data)
            pid = os.fork()
            if pid == 0:
                _child(request, fds, [control.fileno(), wake_r, wake_w])
            for fd in fds:
                os.close(fd)
            children.add(pid)
            send(control, {"spawned": request["id"], "pid": pid})


def _settle() -> None:
    """Before the first fork: move what the imports made out of the cycle collector's view, so
    a replica's collections do not write to (and so copy) the pages it shares with the
    template, and give the heap the imports freed back to the system, so no replica inherits
    it (~0.6 MiB of RSS, ``bench/replica_bench.py``)."""
    gc.collect()
    gc.freeze()
    with contextlib.suppress(OSError, AttributeError):  # glibc only
        ctypes.CDLL(None).malloc_trim(0)


def _reap(control: socket.socket, children: set[int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)
        send(control, {"exited": pid, "code": os.waitstatus_to_exitcode(status)})


def _child(request: dict[str, Any], fds: list[int], inherited: list[int]) -> None:
    """In the forked child: become the replica ``lumi serve`` would be, then exit."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in inherited:
            os.close(fd)
        os.setpgid(0, 0)  # a group of its own, as the process runtime's replicas (see there)
        *listen, ready, out, err = fds
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        for fd in (null, out, err):
            os.close(fd)
        environ = dict(request["env"])
        environ[serve.LISTEN_FDS] = json.dumps(dict(zip(request["sockets"], listen, strict=True)))
        environ[serve.READY_FD] = str(ready)
        environ[serve.PARENT_PID] = str(os.getppid())
        os.environ.clear()
        os.environ.update(environ)
        os.chdir(request["cwd"])
        sys.stdout = os.fdopen(1, "w", buffering=1)
        sys.stderr = os.fdopen(2, "w", buffering=1)
        code = serve.serve(request["service"], environ=os.environ)
    except BaseException as exc:
        code = exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def send(control: socket.socket, message: dict[str, Any]) -> None:
    control.send(json.dumps(message).encode() + b"\n")


# -- the runtime side --------------------------------------------------------------------------


class ForkedProcess:
    """A child of the template, shaped like :class:`asyncio.subprocess.Process`."""

    def __init__(self, pid: int, exited: asyncio.Future[int], out: int, err: int) -> None:
        self.pid = pid
        self._exited = exited
        self.returncode: int | None = None
        self.stdout = asyncio.StreamReader()
        self.stderr = asyncio.StreamReader()
        self._pipes = [(out, self.stdout), (err, self.stderr)]

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        for fd, reader in self._pipes:

            def protocol(reader: asyncio.StreamReader = reader) -> asyncio.StreamReaderProtocol:
                return asyncio.StreamReaderProtocol(reader)

            await loop.connect_read_pipe(protocol, os.fdopen(fd, "rb", 0))

    async def wait(self) -> int:
        self.returncode = await asyncio.shield(self._exited)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None and not self._exited.done():
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Zygote:
    """The template process, started on first use."""

    def __init__(self) -> None:
        self._control: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._spawned: dict[int, asyncio.Future[int]] = {}
        self._exits: dict[int, asyncio.Future[int]] = {}
        self._ids = iter(range(1, 1 << 62))
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._started: asyncio.Future[None] | None = None

    async def start(self) -> None:
        """Start the template (once); returns when it has its imports done."""
        async with self._lock:
            await self._started_control()

    async def _started_control(self) -> socket.socket:
        if self._control is not None:
            return self._control
        # lumi run may have started it already, before it loaded the config.
        launched = _launch.take_early() or _launch.launch()
        self._proc = launched.proc
        ours = launched.control
        ours.setblocking(False)
        self._control = ours
        self._started = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read(ours))
        await self._started
        return ours

    async def _read(self, control: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        buffer = b""
        try:
            while chunk := await loop.sock_recv(control, 65536):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    self._dispatch(json.loads(line))
        finally:
            error = ConnectionError("the replica template process ended")
            for future in [self._started, *self._spawned.values()]:
                if future is not None and not future.done():
                    future.set_exception(error)
            for exit_ in self._exits.values():
                if not exit_.done():
                    exit_.set_result(-int(signal.SIGKILL))

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "ready" in message and self._started is not None and not self._started.done():
            self._started.set_result(None)
        elif "spawned" in message:
            future = self._spawned.pop(message["spawned"])
            self._exits.setdefault(message["pid"], asyncio.get_running_loop().create_future())
            future.set_result(message["pid"])
        elif "exited" in message:
            exit_ = self._exits.setdefault(
                message["exited"], asyncio.get_running_loop().create_future()
            )
            if not exit_.done():
                exit_.set_result(message["code"])

    async def spawn(
        self, service: str, env: Mapping[str, str], cwd: str, sockets: Mapping[str, int], ready: int
    ) -> ForkedProcess:
        """Fork a replica serving ``service``; its fds are passed, then closed here."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            async with self._lock:
                control = await self._started_control()
                request_id = next(self._ids)
                request = {"id": request_id, "service": service, "env": dict(env), "cwd": cwd,
                           "sockets": list(sockets)}  # fmt: skip
                future = self._spawned[request_id] = asyncio.get_running_loop().create_future()
                fds = [*sockets.values(), ready, out_w, err_w]
                socket.send_fds(control, [json.dumps(request).encode()], fds)
        except BaseException:
            os.close(out_r)
            os.close(err_r)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
        pid = await future
        proc = ForkedProcess(pid, self._exits[pid], out_r, err_r)
        await proc.connect()
        return proc

    async def aclose(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._proc is not None:
            await asyncio.to_thread(_end, self._proc)
            self._proc = None
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader


def _end(proc: subprocess.Popen[bytes]) -> None:
    """Wait for the template to end (its control socket is closed), killing it after 10 s."""
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class ForkRuntime(Runtime):
    """Local processes forked from a template that has Lumi imported: the process runtime's
    replicas, minus the interpreter's start-up (what the function runtime's instances use)."""

    name: ClassVar[str] = "fork"

    def __init__(self) -> None:
        self.zygote = Zygote()

    async def prepare(self) -> None:
        """Start the template now, so the first replica does not wait for its imports."""
        await self.zygote.start()

    async def start(
        self, spec: ReplicaSpec, sockets: Mapping[str, socket.socket], output: Output
    ) -> Replica:
        read_fd, write_fd = os.pipe()
        env = {
            **os.environ,
            **spec.environment,
            serve.SPEC: spec.to_json(),
            "PYTHONUNBUFFERED": "1",
        }
        try:
            fds = {name: sock.fileno() for name, sock in sockets.items()}
            proc = await self.zygote.spawn(spec.service, env, spec.app_dir, fds, write_fd)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        return ProcessReplica(proc, read_fd, output)  # type: ignore[arg-type]

    async def aclose(self) -> None:
        await self.zygote.aclose()


if __name__ == "__main__":
    main()
