"""Warm spares: replica processes started ahead of time, so a hot reload is not an interpreter
start away.

Most of a replica's start is Python importing Lumi and its libraries (about 0.5-1 s on a busy
laptop); the app's own modules are quick. A spare is ``python -m lumi.runtimes.process`` started
with ``LUMI_SPARE=1``: it imports Lumi, then waits on stdin for its assignment — the environment
of one replica (service, index, socket, ready pipe) — and from there starts like any replica,
importing the app's code as it is *now*. It inherits every service's listening socket, since
which one it will serve is not known yet, and never accepts on the others. Spares die with the
supervisor (like replicas); closing a spare's stdin without an assignment makes it exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path


class Spare:
    """One waiting replica process; :meth:`assign` turns it into a replica."""

    def __init__(self, proc: asyncio.subprocess.Process, read_fd: int, ready_fd: int) -> None:
        self.proc = proc
        self.read_fd = read_fd  # the supervisor's end of the ready pipe
        self.ready_fd = ready_fd  # the number of the spare's end, in the spare

    async def warmed(self, timeout: float = 60.0) -> bool:
        """Wait until the spare has imported Lumi (its first line); False if it died."""
        from lumi.runtimes.process import SPARE_READY

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

    def assign(self, environ: dict[str, str]) -> None:
        """Send the replica's environment; the spare starts as that replica."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(environ).encode() + b"\n")
        self.proc.stdin.close()

    async def discard(self) -> None:
        """Let an unassigned spare go (it exits on end of input)."""
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        with contextlib.suppress(OSError):
            os.close(self.read_fd)
        try:
            async with asyncio.timeout(10):
                await self.proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


async def start_spare(cwd: Path, sockets: Iterable[int]) -> Spare:
    """Start one spare that may serve on any of ``sockets`` (listening socket fds)."""
    read_fd, write_fd = os.pipe()
    environ = {
        **os.environ,
        "LUMI_SPARE": "1",
        "LUMI_PARENT_PID": str(os.getpid()),
        "PYTHONUNBUFFERED": "1",
    }
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "lumi.runtimes.process",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            pass_fds=(*sockets, write_fd),
            env=environ,
            cwd=cwd,
            start_new_session=True,
        )
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    return Spare(proc, read_fd, write_fd)


class SparePool:
    """Keeps ``size`` spares waiting; :meth:`take` hands one out and starts its replacement."""

    def __init__(self, cwd: Path, sockets: Iterable[int], size: int) -> None:
        self.cwd = cwd
        self.sockets = tuple(sockets)
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
        spare = await start_spare(self.cwd, self.sockets)
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
            with contextlib.suppress(OSError):
                os.close(spare.read_fd)
        self.fill()
        return None

    async def aclose(self) -> None:
        self._closed = True
        for task in list(self._filling):
            with contextlib.suppress(Exception):
                await task
        spares, self._spares = self._spares, []
        await asyncio.gather(*(s.discard() for s in spares))
