"""Deadlines on one timer (lumi.pipeline.deadlines): the semantics of asyncio.timeout, cheaper."""

from __future__ import annotations

import asyncio
import time

import pytest

from lumi.pipeline import deadlines
from lumi.pipeline.deadlines import until


async def test_a_block_past_its_deadline_raises_timeout_error() -> None:
    """The block is cancelled at its deadline and raises TimeoutError; expired says so."""
    started = time.monotonic()
    limit = until(time.time() + 0.05)
    with pytest.raises(TimeoutError), limit:
        await asyncio.sleep(5)
    assert limit.expired and 0.04 < time.monotonic() - started < 1.0
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_block_that_ends_in_time_is_untouched() -> None:
    """A block that ends before its deadline returns its value; nothing fires later."""
    limit = until(time.time() + 0.05)
    with limit:
        await asyncio.sleep(0)
    await asyncio.sleep(0.1)
    assert not limit.expired


async def test_nested_blocks_each_raise_for_their_own_deadline() -> None:
    """An inner deadline ends only the inner block; the outer one ends the outer block even
    from inside the inner one."""
    with until(time.time() + 5):
        with pytest.raises(TimeoutError), until(time.time() + 0.02):
            await asyncio.sleep(5)
        await asyncio.sleep(0)  # the outer block goes on
    outer = until(time.time() + 0.05)
    inner = until(time.time() + 5)
    with pytest.raises(TimeoutError), outer, inner:
        await asyncio.sleep(5)
    assert outer.expired and not inner.expired


async def test_a_cancellation_from_outside_is_not_a_timeout() -> None:
    """Cancelling the task inside a block propagates CancelledError, not TimeoutError."""

    async def work() -> None:
        with until(time.time() + 5):
            await asyncio.sleep(5)

    task = asyncio.create_task(work())
    await asyncio.sleep(0)  # the task runs to its first await
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_ended_blocks_do_not_pile_up() -> None:
    """Thousands of blocks ending long before their deadline leave a small heap behind."""
    for _ in range(5000):
        with until(time.time() + 60):
            pass
    loop = asyncio.get_running_loop()
    timer = deadlines._timer_of(loop)
    assert len(timer.heap) <= 3000


async def test_a_swallowed_deadline_leaves_the_task_uncancelled() -> None:
    """A block that catches the deadline's cancellation ends normally, and the task's
    cancellation count is restored (later awaits are not cancelled)."""
    limit = until(time.time() + 0.02)
    with limit:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            pass
    assert limit.expired
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    await asyncio.sleep(0.01)  # would raise CancelledError if the cancellation were still owed


async def test_a_deadline_already_past_ends_the_block_at_its_first_await() -> None:
    """A deadline in the past cancels the block at its first await, not after it."""
    limit = until(time.time() - 1)
    started = time.monotonic()
    with pytest.raises(TimeoutError), limit:
        await asyncio.sleep(5)
    assert limit.expired and time.monotonic() - started < 1.0


async def test_deadlines_in_concurrent_tasks_fire_in_their_own_order() -> None:
    """Many tasks with different deadlines on one timer each end at their own deadline."""
    ended: list[int] = []

    async def work(i: int) -> None:
        with pytest.raises(TimeoutError), until(time.time() + 0.01 * i):
            await asyncio.sleep(5)
        ended.append(i)

    await asyncio.gather(*(work(i) for i in (5, 1, 4, 2, 3)))
    assert ended == [1, 2, 3, 4, 5]


def test_outside_a_task_it_is_refused() -> None:
    """until() outside a running task raises a clear RuntimeError."""
    with pytest.raises(RuntimeError, match="inside a task"), until(time.time() + 1):
        pass
