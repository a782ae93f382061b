"""The function runtime's activator with in-process instances (fast): deadlines while waiting
for a busy instance, a failing start, and instances kept warm."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from lumi import transports
from lumi.model.context import Metadata
from lumi.model.errors import DeadlineExceeded, Unavailable
from lumi.pipeline.call import Call
from lumi.runtimes.base import ReplicaSpec
from lumi.runtimes.function import FunctionReplica, FunctionRuntime
from lumi.runtimes.inproc import InprocRuntime
from lumi.testing import wait_until
from tests.integration.harness import copy_app

ECHO = Path(__file__).parent / "apps" / "echo"
Activate = Callable[[str], Awaitable[tuple[FunctionReplica, str, list[str]]]]


@pytest.fixture
async def activated(tmp_path: Path) -> AsyncIterator[Activate]:
    """``await activated(function_table)``: an activator for Echo and its endpoint."""
    opened: list[tuple[FunctionRuntime, FunctionReplica]] = []

    async def start(table: str) -> tuple[FunctionReplica, str, list[str]]:
        app = copy_app(ECHO, tmp_path / f"echo{len(opened)}")
        (app / "lumi.toml").write_text(
            (app / "lumi.toml").read_text() + "\n[services.Echo.function]\n" + table
        )
        http = transports.get("http")
        sock = http.bind("127.0.0.1", 0)
        endpoint = http.endpoint_of(sock)
        spec = ReplicaSpec(
            app_dir=str(app), env=None, service="Echo", replica=0, endpoints={"Echo": [endpoint]}
        )
        runtime = FunctionRuntime(instances=InprocRuntime(configure_process=False))
        lines: list[str] = []
        replica = await runtime.start(spec, {"http": sock}, lines.append)
        sock.close()
        assert isinstance(replica, FunctionReplica)
        opened.append((runtime, replica))
        await replica.ready(30)
        return replica, endpoint, lines

    yield start
    for runtime, replica in opened:
        await replica.stop(5)
        await runtime.aclose()


async def call(endpoint: str, method: str, body: bytes, deadline: float | None = None) -> bytes:
    channel = transports.get("http").channel(endpoint)
    try:
        metadata = Metadata(deadline=None if deadline is None else time.time() + deadline)
        return await channel.call(Call("Echo", method, body, metadata))
    finally:
        await channel.aclose()


async def test_a_call_waiting_for_a_busy_instance_keeps_its_deadline(activated: Activate) -> None:
    """With the only instance busy, a call whose deadline passes while it waits gets
    DEADLINE_EXCEEDED then, not after queue_timeout."""
    replica, endpoint, _ = await activated(
        "concurrency = 1\nmax_instances = 1\nqueue_timeout = 20\n"
    )
    pool = replica.pool
    assert pool is not None
    slow = asyncio.create_task(call(endpoint, "slow", b'{"seconds": 3}'))
    await wait_until(lambda: bool(pool.instances) and pool.instances[0].in_flight == 1, timeout=20)
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        await call(endpoint, "echo", b'{"text": "x"}', deadline=0.5)
    assert time.monotonic() - started < 2.5
    assert await slow == b"3.0"


async def test_a_failing_start_is_unavailable_and_not_retried_at_once(
    activated: Activate, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An instance whose startup fails makes the call UNAVAILABLE with the cause; calls right
    after fail fast without starting another."""
    monkeypatch.setenv("ECHO_FAIL_STARTUP", "no database")
    replica, endpoint, lines = await activated("idle_timeout = 5\n")
    pool = replica.pool
    assert pool is not None
    with pytest.raises(Unavailable, match="Echo could not start: .*no database"):
        await call(endpoint, "echo", b'{"text": "x"}')
    started = time.monotonic()
    with pytest.raises(Unavailable, match="no database"):
        await call(endpoint, "echo", b'{"text": "x"}')
    assert time.monotonic() - started < 0.5
    assert sum("could not start" in line for line in lines) == 1
    assert pool.instances == []


async def test_min_instances_are_started_with_the_activator(activated: Activate) -> None:
    """min_instances keeps that many instances warm from the start, past the idle timeout."""
    replica, endpoint, _ = await activated("min_instances = 1\nidle_timeout = 0.2\n")
    pool = replica.pool
    assert pool is not None
    await wait_until(lambda: any(i.ready for i in pool.instances), timeout=20)
    await asyncio.sleep(0.6)  # three idle timeouts pass: the warm instance must stay
    assert len(pool.instances) == 1
    assert pool.cold_starts == 1
    assert await call(endpoint, "echo", b'{"text": "y"}') == b'"y"'
    assert pool.cold_starts == 1
