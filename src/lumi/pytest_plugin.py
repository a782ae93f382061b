"""pytest fixtures for Lumi services (registered through the ``pytest11`` entry point).

* ``lumi_app`` — ``app = await lumi_app([Orders, Inventory], fakes={...})`` starts an in-process
  app and stops it after the test (needs pytest-asyncio: ``pip install lumi-runtime[testing]``).
* ``lumi_worker`` — :func:`lumi.testing.worker`, one service with faked capabilities.
* ``lumi_events`` — ``events = lumi_events(app)`` captures what an app publishes.

``async def`` tests run as they are written, with no marker and no ``asyncio_mode`` setting:
an unmarked coroutine test is marked ``asyncio`` for pytest-asyncio (its strict default mode
would otherwise skip it), and without pytest-asyncio this plugin runs it in a fresh event loop.
Tests marked for another framework (``anyio``, ``trio``) are left alone; ``lumi_asyncio =
false`` in the pytest configuration turns this off.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from lumi import testing
    from lumi.runtimes.app import App

# Nothing of Lumi is imported until a fixture is used: every pytest session loads this plugin,
# and collecting tests must not pay for runtimes, transports or OpenTelemetry.

_FRAMEWORKS = ("asyncio", "anyio", "trio")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "lumi_asyncio",
        "run unmarked async def tests on asyncio (lumi's pytest plugin)",
        type="bool",
        default=True,
    )


def _asyncio_plugin(config: pytest.Config) -> bool:
    """Whether pytest-asyncio is active in this session."""
    return config.pluginmanager.hasplugin("asyncio")


def _marked(holder: Any) -> bool:
    marks = getattr(holder, "pytestmark", [])
    marks = marks if isinstance(marks, list) else [marks]
    return any(getattr(m, "name", None) in _FRAMEWORKS for m in marks)


def _framework_chosen(collector: pytest.Collector, obj: object) -> bool:
    """True if the test, its class or its module is marked for an async framework."""
    holders: list[Any] = [obj]
    node: Any = collector
    while isinstance(node, pytest.Class | pytest.Module):
        holders.append(node.obj)
        node = node.parent
    return any(_marked(holder) for holder in holders)


_LOOP_SCOPE = "asyncio_default_fixture_loop_scope"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Give pytest-asyncio its fixture loop scope ("function", its default) when the project
    sets none, before it reads the setting: unset, it warns in every session (an error under
    ``-W error`` since pytest 9.2), though a README-style test suite needs nothing else."""
    if not _asyncio_plugin(config) or not config.getini("lumi_asyncio"):
        return
    cache = getattr(config, "_inicache", None)  # pytest has no public way to default another
    if isinstance(cache, dict) and not config.getini(_LOOP_SCOPE):  # plugin's setting
        cache[_LOOP_SCOPE] = "function"


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    """Mark an unmarked ``async def`` test for pytest-asyncio before its item is built."""
    if not (inspect.iscoroutinefunction(obj) and _asyncio_plugin(collector.config)):
        return
    if collector.config.getini("lumi_asyncio") and not _framework_chosen(collector, obj):
        pytest.mark.asyncio(obj)


def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Without pytest-asyncio: run a coroutine test in a fresh event loop."""
    if _asyncio_plugin(pyfuncitem.config) or not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    if not pyfuncitem.config.getini("lumi_asyncio") or any(
        pyfuncitem.get_closest_marker(name) for name in ("anyio", "trio")
    ):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    asyncio.run(pyfuncitem.obj(**{name: pyfuncitem.funcargs[name] for name in names}))
    return True


async def _lumi_app() -> AsyncIterator[Callable[..., Any]]:
    """Start in-process apps for this test; all are stopped at teardown."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(services: list[type[Any]], **options: Any) -> App:
            from lumi.runtimes.app import App

            return await stack.enter_async_context(App(services, **options))

        yield start


if importlib.util.find_spec("pytest_asyncio") is not None:
    import pytest_asyncio

    lumi_app = pytest_asyncio.fixture(_lumi_app, name="lumi_app")
else:  # pragma: no cover - depends on what is installed

    @pytest.fixture
    def lumi_app() -> Any:
        raise pytest.UsageError(
            "the lumi_app fixture needs pytest-asyncio: pip install 'lumi-runtime[testing]'"
        )


@pytest.fixture
def lumi_worker() -> Callable[..., Any]:
    """Build one service instance with faked capabilities (see lumi.testing.worker)."""
    from lumi import testing

    return testing.worker


@pytest.fixture
def lumi_events() -> Iterator[Callable[[Any], testing.EventLog]]:
    """Capture the events an app publishes: ``events = lumi_events(app)``."""
    from lumi import testing

    with contextlib.ExitStack() as stack:

        def capture(target: Any) -> testing.EventLog:
            return stack.enter_context(testing.capture_events(target))

        yield capture
