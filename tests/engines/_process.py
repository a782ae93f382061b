"""Start and stop a real server process on a loopback port, for the engine fixtures."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from tests.servers import free_port, port_open


class Engine:
    """A server process: :meth:`start` waits until its port accepts connections; :meth:`kill`
    (SIGKILL) and :meth:`stop` (SIGTERM) wait until it is gone; it can be started again on the
    same port."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        port: int,
        log: Path,
        env: dict[str, str] | None = None,
        ready_timeout: float = 30.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.port = port
        self.log = log
        self.env = {**os.environ, **(env or {})}
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env,
            )  # fmt: skip
        deadline = time.monotonic() + self.ready_timeout
        while not port_open(self.port):
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.log.read_text()[-4000:]}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"{self.name} did not listen on {self.port} in time")
            time.sleep(0.02)

    def _end(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.02)

    def kill(self) -> None:
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        self._end(signal.SIGTERM)

    def restart(self, *, graceful: bool = False) -> None:
        """SIGKILL (or, ``graceful``, SIGTERM) the server and start it again."""
        self.stop() if graceful else self.kill()
        self.start()


__all__ = ["Engine", "free_port"]
