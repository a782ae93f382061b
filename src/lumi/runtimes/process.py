"""The local process runtime: one replica in one OS process (the default of ``lumi run``).

Each replica is forked from a template process that has Lumi imported
(:mod:`lumi.runtimes.zygote`), so a start skips the interpreter's and the imports' (most of
it), and replicas share those pages with the template; a replica of a deployed artifact (its
own Python) or one that cannot be forked starts ``python -m lumi.runtimes.serve`` instead.

The supervisor binds each replica's sockets and passes them in, so a restarted replica serves
on the same ports and connections wait in the backlog instead of failing. The child is ``lumi
serve SERVICE`` (:mod:`lumi.runtimes.serve`): it gets its :class:`~lumi.runtimes.base.ReplicaSpec`
and socket fds in ``LUMI_*`` environment variables and reports "ready" (or one line of error)
on a pipe; it serves until SIGTERM/SIGINT, then drains and exits 0. It runs in its own
process group (a terminal's Ctrl-C reaches only the supervisor, which orders the stop; not its
own session, which Linux's scheduler would make an autogroup of its own, starving a busy
replica) and asks the kernel for SIGTERM when the supervisor dies, so no replica is ever orphaned.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from lumi.runtimes import serve
from lumi.runtimes._spares import SparePool
from lumi.runtimes.base import Output, Replica, ReplicaSpec, Runtime, StartError

if TYPE_CHECKING:
    from lumi.runtimes.zygote import Zygote


class ProcessReplica(Replica):
    """A replica in a child process (the process runtime's, or a container engine's client)
    that reports readiness on the pipe ``ready_fd``; its output lines go to ``output``."""

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
    """Runs each replica as ``python -m lumi.runtimes.serve SERVICE`` (``lumi serve``) in the
    app folder."""

    name: ClassVar[str] = "process"

    def __init__(self, environment: Mapping[str, str] | None = None, *, fork: bool = True) -> None:
        self.environment = dict(environment or {})
        self._spares: SparePool | None = None
        # Replicas fork from a template with Lumi imported (lumi.runtimes.zygote): a start
        # without the interpreter's, pages shared with the template. None: start interpreters.
        from lumi.runtimes.zygote import Zygote  # it builds on this module

        self._template: Zygote | None = Zygote() if fork else None
        self._template_started: asyncio.Future[None] | None = None

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

    def prestart(self, count: int) -> None:
        """Start the template replicas fork from now, while ``lumi run`` does the rest."""
        if self._template is not None and self._template_started is None:
            self._template_started = asyncio.ensure_future(self._template.start())

    async def aclose(self) -> None:
        if self._template is not None:
            await self._template.aclose()
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
            serve.SPEC: spec.to_json(),
            serve.PARENT_PID: str(os.getpid()),
        }
        # Spares run this interpreter; a replica of a deployed artifact runs its own.
        spare = self._spares.take() if self._spares is not None and not spec.python else None
        if spare is not None:
            try:
                spare.assign(own, {"ready": write_fd, **fds})
            finally:
                os.close(write_fd)
            return ProcessReplica(spare.proc, read_fd, output)
        if self._template is not None and not spec.python:
            try:
                env = {**os.environ, **own, "PYTHONUNBUFFERED": "1"}
                forked = await self._template.spawn(spec.service, env, spec.app_dir, fds, write_fd)
            except (OSError, ConnectionError) as exc:  # no template: start an interpreter
                output(f"lumi: cannot fork {spec.service} from the template ({exc}); starting it")
            else:
                os.close(write_fd)
                return ProcessReplica(forked, read_fd, output)  # type: ignore[arg-type]
        environ = {
            **os.environ,
            **own,
            serve.LISTEN_FDS: json.dumps(fds),
            serve.READY_FD: str(write_fd),
            "PYTHONUNBUFFERED": "1",
        }
        try:
            proc = await asyncio.create_subprocess_exec(
                spec.python or sys.executable,
                "-m",
                "lumi.runtimes.serve",
                spec.service,
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
