"""pytest fixtures for Lumi services (registered through the ``pytest11`` entry point).

* ``lumi_app`` — ``app = await lumi_app([Orders, Inventory], fakes={...})`` starts an in-process
  app and stops it after the test (needs pytest-asyncio: ``pip install lumi-runtime[testing]``).
* ``lumi_worker`` — :func:`lumi.testing.worker`, one service with faked capabilities.
* ``lumi_events`` — ``events = lumi_events(app)`` captures what an app publishes.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from lumi import testing
    from lumi.runtimes.app import App

# Nothing of Lumi is imported until a fixture is used: every pytest session loads this plugin,
# and collecting tests must not pay for runtimes, transports or OpenTelemetry.


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
