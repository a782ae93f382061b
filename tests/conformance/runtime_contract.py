"""The runtime contract, written once: every runtime's test module subclasses it.

A subclass provides the ``runtime`` fixture. Each case starts replicas of the echo test app
(tests/integration/apps/echo) on sockets the test binds, as the supervisor would, and checks
what the supervisor relies on: ready means serving, a start failure is a StartError naming the
cause, stop drains in-flight calls, kill ends a replica at once, and wait() reports the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import lumi.testing
from lumi import transports
from lumi.model.context import Metadata
from lumi.pipeline.call import Call
from lumi.runtimes.base import Replica, ReplicaSpec, Runtime, StartError
from tests.integration.harness import copy_app

ECHO_APP = Path(__file__).parent.parent / "integration" / "apps" / "echo"


class Started:
    """One replica under test and the endpoint it serves."""

    def __init__(self, replica: Replica, endpoint: str, sock: socket.socket) -> None:
        self.replica = replica
        self.endpoint = endpoint
        self.sock = sock
        self.output: list[str] = []

    async def call(self, method: str, body: bytes, timeout: float = 10.0) -> bytes:
        channel = transports.get("http").channel(self.endpoint)
        try:
            async with asyncio.timeout(timeout):
                return await channel.call(Call("Echo", method, body, Metadata()))
        finally:
            await channel.aclose()


class RuntimeContract:
    """The cases every runtime passes."""

    @pytest.fixture
    def runtime(self) -> Runtime:
        raise NotImplementedError("a subclass provides the runtime")

    @pytest.fixture
    def app_dir(self, tmp_path: Path) -> Path:
        return copy_app(ECHO_APP, tmp_path / "echo")

    @pytest.fixture
    async def start(
        self, runtime: Runtime, app_dir: Path
    ) -> AsyncIterator[contextlib.AbstractAsyncContextManager[Started]]:
        """``async with start(service) as started``: a replica, killed at the end if needed."""
        opened: list[Started] = []

        @contextlib.asynccontextmanager
        async def start(
            service: str = "Echo", sock: socket.socket | None = None
        ) -> AsyncIterator[Started]:
            http = transports.get("http")
            own = sock is None
            sock = http.bind("127.0.0.1", 0) if sock is None else sock
            endpoint = http.endpoint_of(sock)
            spec = ReplicaSpec(
                app_dir=str(app_dir),
                env=None,
                service=service,
                replica=0,
                endpoints={service: [endpoint]},
            )
            lines: list[str] = []
            replica = await runtime.start(spec, {"http": sock}, lines.append)
            started = Started(replica, endpoint, sock)
            started.output = lines
            opened.append(started)
            try:
                yield started
            finally:
                await replica.kill()
                if own:
                    sock.close()

        yield start  # type: ignore[misc]
        await runtime.aclose()

    async def test_ready_means_serving(self, start: Any) -> None:
        """Once ready() returns, the replica answers calls on its endpoint."""
        async with start() as started:
            await started.replica.ready(30)
            assert await started.call("echo", b'{"text": "hi", "times": 2}') == b'"hihi"'

    async def test_a_start_failure_names_the_cause(self, start: Any) -> None:
        """A replica that cannot start makes ready() raise StartError saying why."""
        async with start("Nope") as started:
            with pytest.raises(StartError, match="Nope"):
                await started.replica.ready(30)

    async def test_stop_drains_calls_in_flight(
        self, start: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """stop() lets a call in flight finish with its answer, then the replica ends."""
        marks = tmp_path / "marks"
        monkeypatch.setenv("ECHO_MARKS", str(marks))
        async with start() as started:
            await started.replica.ready(30)
            slow = asyncio.create_task(started.call("slow", b'{"seconds": 1.0}'))
            await lumi.testing.wait_until(
                lambda: marks.exists() and "slow" in marks.read_text(),
                timeout=10,
                message="the slow call to start",
            )
            await started.replica.stop(grace=10)
            assert await slow == b"1.0"
            async with asyncio.timeout(10):
                assert await started.replica.wait() == 0

    async def test_kill_ends_it_at_once(
        self, start: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """kill() ends a replica without waiting for its calls; wait() then returns."""
        marks = tmp_path / "marks"
        monkeypatch.setenv("ECHO_MARKS", str(marks))
        async with start() as started:
            await started.replica.ready(30)
            slow = asyncio.create_task(started.call("slow", b'{"seconds": 30}', timeout=60))
            await lumi.testing.wait_until(
                lambda: marks.exists() and "slow" in marks.read_text(),
                timeout=10,
                message="the slow call to start",
            )
            async with asyncio.timeout(10):
                await started.replica.kill()
                await started.replica.wait()
            slow.cancel()
            with contextlib.suppress(BaseException):
                await slow

    async def test_a_new_replica_serves_on_the_same_socket(self, start: Any) -> None:
        """After a replica is killed, another started on the same socket serves there (how
        the supervisor restarts replicas on the same ports)."""
        http = transports.get("http")
        sock = http.bind("127.0.0.1", 0)
        try:
            async with start(sock=sock) as first:
                await first.replica.ready(30)
                assert await first.call("echo", b'{"text": "a"}') == b'"a"'
                await first.replica.kill()
            async with start(sock=sock) as second:
                await second.replica.ready(30)
                assert second.endpoint == first.endpoint
                assert await second.call("echo", b'{"text": "b"}') == b'"b"'
        finally:
            sock.close()
