"""The runtime contract on the process runtime."""

from __future__ import annotations

import pytest

from lumi.runtimes.base import Runtime
from lumi.runtimes.process import ProcessRuntime
from tests.conformance.runtime_contract import RuntimeContract


class TestProcessRuntime(RuntimeContract):
    @pytest.fixture
    def runtime(self) -> Runtime:
        return ProcessRuntime()
