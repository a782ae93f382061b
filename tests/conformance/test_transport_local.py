"""The transport contract on the in-process local channel (what ``lumi.App`` uses)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from lumi.model.errors import Lost, NotSent
from lumi.model.interface import ServiceInterface
from lumi.pipeline.call import Call, Handler
from lumi.transports.base import Channel
from lumi.transports.local import LocalChannel
from tests.conformance.transport_contract import TransportContract, Wire

_ports = itertools.count(1)


class LocalWire(Wire):
    """Calls go straight into the served handler; there is no wire to limit bodies. Closing a
    served address cancels its calls in flight (what a process dying does to them)."""

    name = "local"
    enforces_body_limit = False

    def __init__(self) -> None:
        self.handler: Handler | None = None
        self.handlers: dict[str, Handler] = {}
        self.inflight: dict[str, set[asyncio.Task[bytes]]] = {}

    @contextlib.asynccontextmanager
    async def serve(self, handler: Handler) -> AsyncIterator[str]:
        self.handler = handler
        yield "local"

    def channel(self, endpoint: str) -> Channel:
        assert self.handler is not None
        return LocalChannel(self.handler)

    async def serve_service(
        self,
        handler: Handler,
        interfaces: dict[str, ServiceInterface],
        port: int = 0,
        grace: float = 0.5,
    ) -> tuple[str, Callable[[], Awaitable[None]]]:
        endpoint = f"local://127.0.0.1:{port or next(_ports)}"
        self.handlers[endpoint] = handler
        tasks = self.inflight.setdefault(endpoint, set())

        async def close() -> None:
            del self.handlers[endpoint]
            for task in list(tasks):
                task.cancel()

        return endpoint, close

    def channel_to(self, endpoint: str, iface: ServiceInterface, caller: str = "Client") -> Channel:
        async def call(call: Call) -> bytes:
            handler = self.handlers.get(endpoint)
            if handler is None:
                raise NotSent(f"cannot reach {endpoint}: nothing serves it")
            task = asyncio.ensure_future(handler(call))
            self.inflight[endpoint].add(task)
            try:
                return await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if task.cancelled() and current is not None and not current.cancelling():
                    raise Lost(f"{endpoint} stopped during the call") from None
                raise
            finally:
                self.inflight[endpoint].discard(task)

        return LocalChannel(call)


class TestLocalTransport(TransportContract):
    @pytest.fixture
    def wire(self) -> Wire:
        return LocalWire()
