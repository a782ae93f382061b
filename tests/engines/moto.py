"""A real ``moto_server`` (PyPI ``moto[server]``) on a free loopback port: SNS and SQS for tests.

It is started through :mod:`tests.engines.moto_main`, which makes SQS receives atomic as on real
SQS (plain moto can give one in-flight message to two concurrent receivers).

``moto_server`` is one server for the whole session. It keeps everything in memory and slows
down past a few hundred messages in one queue, so tests use fresh topics and small volumes.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import free_port, port_open

# Fake credentials for moto only: the SNS broker uses the standard AWS credential chain.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _moto_server() -> list[str]:
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("werkzeug") is None:
        raise RuntimeError("moto_server is not installed: pip install 'lumi-runtime[test]'")
    # -P: the script's folder must not come first on sys.path (its moto.py would shadow moto)
    return [sys.executable, "-P", str(Path(__file__).with_name("moto_main.py"))]


class MotoServer:
    """``moto_server -H 127.0.0.1 -p PORT``; ``url(...)`` is an ``sns://`` events value for it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, **options: str) -> str:
        query = "".join(f"&{name}={value}" for name, value in options.items())
        return f"sns://?region=us-east-1&endpoint={self.endpoint}{query}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [*_moto_server(), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **AWS_ENV},
        )
        deadline = time.monotonic() + 60
        while not port_open(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError("moto_server exited at start")
            if time.monotonic() > deadline:
                raise RuntimeError("moto_server did not listen within 60 s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """One moto_server for the session, stopped at its end; the process gets fake credentials."""
    saved = {name: os.environ.get(name) for name in AWS_ENV}
    os.environ.update(AWS_ENV)
    server = MotoServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
