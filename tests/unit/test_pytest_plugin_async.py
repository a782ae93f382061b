"""The pytest plugin runs ``async def`` tests as the README writes them: no marker, no
``asyncio_mode`` setting, with or without pytest-asyncio; other frameworks' tests are theirs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = """
import lumi
from lumi import testing


class Inventory(lumi.Service):
    @lumi.api(idempotent=True)
    async def reserve(self, sku: str, qty: int) -> bool:
        return True


class Orders(lumi.Service):
    inventory: Inventory

    @lumi.api
    async def place(self, sku: str, qty: int) -> str:
        await self.inventory.reserve(sku=sku, qty=qty)
        return f"order for {qty} {sku}"


async def test_worker():
    orders = testing.worker(Orders)
    orders.inventory.reserve.return_value = True
    assert await orders.place("apple", 2) == "order for 2 apple"
    orders.inventory.reserve.assert_awaited_once_with(sku="apple", qty=2)


class TestInAClass:
    async def test_app(self, lumi_app):
        app = await lumi_app([Inventory, Orders])
        assert await app.client(Orders).place(sku="a", qty=1) == "order for 1 a"
"""

ANYIO = """
import asyncio

import pytest

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return ("asyncio", {"use_uvloop": True})  # anyio runs it on uvloop; pytest-asyncio would not


async def test_on_anyio():
    assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
"""


def pytest_run(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pytest in ``folder``, which has a bare pytest.ini (none of this repository's settings)."""
    (folder / "pytest.ini").write_text("[pytest]\n")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-W", "error", "-p", "no:cacheprovider", *args],
        cwd=folder, capture_output=True, text=True, timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")},
    )  # fmt: skip


@pytest.mark.parametrize("plugins", [[], ["-p", "no:asyncio"]], ids=["pytest-asyncio", "without"])
def test_unmarked_async_tests_run(tmp_path: Path, plugins: list[str]) -> None:
    """Unmarked coroutine tests pass with pytest-asyncio's strict default mode, and without
    pytest-asyncio at all (the lumi_app fixture needs it, so only the worker test runs there)."""
    (tmp_path / "test_shop.py").write_text(TESTS)
    selected = ["-k", "worker"] if plugins else []
    result = pytest_run(tmp_path, *plugins, *selected)
    expected = "1 passed" if plugins else "2 passed"
    assert result.returncode == 0 and expected in result.stdout, result.stdout + result.stderr


def test_tests_marked_for_another_framework_are_left_to_it(tmp_path: Path) -> None:
    """A module marked ``anyio`` runs under anyio's plugin (on the loop it chose), not
    re-marked for asyncio."""
    (tmp_path / "test_anyio.py").write_text(ANYIO)
    result = pytest_run(tmp_path, "-p", "anyio")
    assert result.returncode == 0 and "1 passed" in result.stdout, result.stdout + result.stderr
