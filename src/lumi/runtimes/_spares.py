"""Warm spares of the process runtime: replica processes started ahead of time, so a restart
(hot reload) is not an interpreter start away.

Most of a replica's start is Python importing Lumi and its libraries (0.5-1 s on a busy
laptop); the app's own modules are quick. A spare is ``python -m lumi.runtimes.serve`` with
``LUMI_SPARE_FD`` set: it imports Lumi, says :data:`SPARE_READY` on stdout, then waits on a Unix
socket for its assignment — the environment of one replica plus its file descriptors (the ready
pipe and the listening sockets), passed with ``SCM_RIGHTS`` — and from there starts like any
replica, importing the app's code as it is *now*. A spare never holds a socket it will not
serve, and dies with the supervisor like any replica; a closed socket without an assignment
makes it exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys

SPARE_READY = "lumi: spare ready"  # a spare's first line on stdout, once it has imported Lumi


class Spare:
    """One waiting replica process; :meth:`assign` turns it into a replica."""

    def __init__(self, proc: asyncio.subprocess.Process, control: socket.socket) -> None:
        self.proc = proc
        self.control = control  # the supervisor's end of the assignment socket

    async def warmed(self, timeout: float = 60.0) -> bool:
        """Wait until the spare has imported Lumi (its first line); False if it died."""
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                line = await self.proc.stdout.readline()
        except TimeoutError:
            return False
        return line.decode().strip() == SPARE_READY

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    def assign(self, environ: dict[str, str], fds: dict[str, int]) -> None:
        """Send the replica's environment and descriptors (name → fd); it starts as that
        replica. The fds are duplicated into the spare; the caller keeps (and closes) its own."""
        names = list(fds)
        message = json.dumps({"environ": environ, "fds": names}).encode()
        socket.send_fds(self.control, [message], [fds[name] for name in names])
        self.control.close()

    async def discard(self) -> None:
        """Let an unassigned spare go (it exits when its socket closes)."""
        self.control.close()
        try:
            async with asyncio.timeout(10):
                await self.proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


async def start_spare() -> Spare:
    """Start one spare process."""
    # SEQPACKET: the assignment arrives as one message, never split
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    environ = {
        **os.environ,
        "LUMI_SPARE_FD": str(theirs.fileno()),
        "LUMI_PARENT_PID": str(os.getpid()),
        "PYTHONUNBUFFERED": "1",
    }
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "lumi.runtimes.serve",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            pass_fds=(theirs.fileno(),),
            env=environ,
            process_group=0,
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return Spare(proc, ours)


class SparePool:
    """Keeps ``size`` spares waiting; :meth:`take` hands one out and starts its replacement."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._spares: list[Spare] = []
        self._filling: set[asyncio.Task[None]] = set()
        self._closed = False

    def fill(self) -> None:
        """Start spares in the background until ``size`` are waiting or starting."""
        while not self._closed and len(self._spares) + len(self._filling) < self.size:
            task = asyncio.create_task(self._add())
            self._filling.add(task)
            task.add_done_callback(self._filling.discard)

    async def _add(self) -> None:
        spare = await start_spare()
        if self._closed or not await spare.warmed() or self._closed:
            await spare.discard()
        else:
            self._spares.append(spare)

    async def ready(self) -> None:
        """Wait until the spares being started are warm (or have failed)."""
        while self._filling:
            await asyncio.gather(*list(self._filling), return_exceptions=True)

    def take(self) -> Spare | None:
        """A waiting spare (None if none is ready); a replacement starts at once."""
        while self._spares:
            spare = self._spares.pop(0)
            if spare.alive:
                self.fill()
                return spare
            spare.control.close()
        self.fill()
        return None

    async def aclose(self) -> None:
        self._closed = True
        for task in list(self._filling):
            with contextlib.suppress(Exception):
                await task
        spares, self._spares = self._spares, []
        await asyncio.gather(*(s.discard() for s in spares))


def wait_for_assignment() -> None:
    """In a spare (``LUMI_SPARE_FD`` set): import what every replica needs, say so, then wait
    for the replica to become; its environment and descriptors are installed before returning.
    Exits if the supervisor sends nothing."""
    import importlib

    control = socket.socket(fileno=int(os.environ.pop("LUMI_SPARE_FD")))
    for name in ("lumi.runtimes.replica", "lumi.brokers.embedded", "lumi.transports.http"):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    sys.stdout.write(f"{SPARE_READY}\n")
    sys.stdout.flush()
    message, fds, _, _ = socket.recv_fds(control, 1 << 20, 64)
    control.close()
    if not message:
        sys.exit(0)
    assignment = json.loads(message)
    received = dict(zip(assignment["fds"], fds, strict=True))
    environ: dict[str, str] = assignment["environ"]
    environ["LUMI_READY_FD"] = str(received.pop("ready"))
    environ["LUMI_LISTEN_FDS"] = json.dumps(received)
    os.environ.update(environ)
