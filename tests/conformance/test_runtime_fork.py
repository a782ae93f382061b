"""The runtime contract on replicas forked from the template process (the function runtime's
instances)."""

from __future__ import annotations

import pytest

from lumi.runtimes.base import Runtime
from lumi.runtimes.zygote import ForkRuntime
from tests.conformance.runtime_contract import RuntimeContract


class TestForkRuntime(RuntimeContract):
    @pytest.fixture
    def runtime(self) -> Runtime:
        return ForkRuntime()
