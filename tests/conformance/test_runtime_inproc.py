"""The runtime contract on the inproc runtime."""

from __future__ import annotations

import pytest

from lumi.runtimes.base import Runtime
from lumi.runtimes.inproc import InprocRuntime
from tests.conformance.runtime_contract import RuntimeContract


class TestInprocRuntime(RuntimeContract):
    @pytest.fixture
    def runtime(self) -> Runtime:
        return InprocRuntime(configure_process=False)  # the test process keeps its logging
