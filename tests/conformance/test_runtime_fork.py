"""The runtime contract on replicas forked from the template process (the function runtime's
instances)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lumi.runtimes import _launch
from lumi.runtimes.base import Runtime
from lumi.runtimes.zygote import ForkRuntime
from tests.conformance.runtime_contract import RuntimeContract


class TestForkRuntime(RuntimeContract):
    @pytest.fixture
    def runtime(self) -> Runtime:
        return ForkRuntime()


class TestForkRuntimeFromAnEarlyTemplate(RuntimeContract):
    """The contract on a template started before the runtime existed (as ``lumi run`` does,
    before it loads the config)."""

    @pytest.fixture
    def runtime(self) -> Iterator[Runtime]:
        _launch.launch_early()
        yield ForkRuntime()
        _launch.discard_early()


async def test_the_runtime_takes_the_early_template_and_an_untaken_one_ends() -> None:
    """The runtime forks from the template launched early (no second one); one nobody took
    ends when discarded."""
    _launch.launch_early()
    early = _launch._early
    assert early is not None
    runtime = ForkRuntime()
    try:
        await runtime.prepare()
        assert runtime.zygote._proc is early.proc and _launch.take_early() is None
    finally:
        await runtime.aclose()
    assert early.proc.returncode is not None
    _launch.launch_early()
    untaken = _launch._early
    assert untaken is not None
    _launch.discard_early()
    assert untaken.proc.returncode is not None and _launch.take_early() is None
