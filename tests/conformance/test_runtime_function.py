"""The runtime contract on the function runtime: an activator holding the endpoint, the echo
service's instances started by the calls themselves."""

from __future__ import annotations

import pytest

from lumi.runtimes.base import Runtime
from lumi.runtimes.function import FunctionRuntime
from tests.conformance.runtime_contract import RuntimeContract

pytestmark = pytest.mark.slow


class TestFunctionRuntime(RuntimeContract):
    @pytest.fixture
    def runtime(self) -> Runtime:
        return FunctionRuntime()
