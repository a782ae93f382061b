"""A real ``redis-server`` (Debian's apt package) on a free loopback port, started by the tests.

``redis_server`` is one server for the whole session (AOF on, ``appendfsync always``, so a
SIGKILL of the server loses nothing it acknowledged); tests that restart or reconfigure a server
start their own :class:`RedisServer`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import free_port, port_open

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer:
    """``start()``, ``kill()`` (SIGKILL), ``start()`` again on the same port and data folder."""

    def __init__(
        self,
        *,
        appendonly: bool = True,
        password: str | None = None,
        tls: tuple[Path, Path, Path] | None = None,  # (cert, key, ca)
    ) -> None:
        if not os.path.exists(REDIS_SERVER):
            raise RuntimeError(
                "redis-server is not installed: run scripts/test-deps (apt package redis-server)"
            )
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="lumi-redis-"))
        self.appendonly = appendonly
        self.password = password
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        auth = f":{self.password}@" if self.password else ""
        return f"{scheme}://{auth}127.0.0.1:{self.port}/0"

    def argv(self) -> list[str]:
        argv = [
            REDIS_SERVER, "--bind", "127.0.0.1", "--save", "", "--dir", str(self.dir),
            "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always",
            "--daemonize", "no", "--logfile", str(self.dir / "redis.log"),
        ]  # fmt: skip
        if self.tls:
            cert, key, ca = self.tls
            argv += [
                "--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(cert),
                "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca),
                "--tls-auth-clients", "no",
            ]  # fmt: skip
        else:
            argv += ["--port", str(self.port)]
        if self.password:
            argv += ["--requirepass", self.password]
        return argv

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 30
        while not port_open(self.port):
            if self.proc.poll() is not None:
                log = self.dir / "redis.log"
                raise RuntimeError(
                    f"redis-server exited: {log.read_text() if log.exists() else '(no log)'}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not listen within 30 s")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: no shutdown save, no flush beyond what appendfsync already did."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.02)

    def destroy(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the session (AOF on), stopped at its end."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.destroy()
