"""The transport contract on the local (in-process) transport."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import pytest

from lumi.model.interface import ServiceInterface
from lumi.pipeline import Call, Handler
from lumi.pipeline.outcome import Lost, NotSent
from lumi.transports.base import Channel
from lumi.transports.local import LocalChannel
from tests.conformance.transport_contract import TransportContract, Wire

_ports = itertools.count(1)


class LocalWire(Wire):
    """Addresses name handlers in this process; closing one cancels its calls in flight."""

    name = "local"
    size_limited = False

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}
        self.inflight: dict[str, set[asyncio.Task[bytes]]] = {}

    async def serve(
        self, handler: Handler, interfaces: dict[str, ServiceInterface], port: int = 0
    ) -> tuple[str, Callable[[float], Any]]:
        address = f"local://127.0.0.1:{port or next(_ports)}"
        self.handlers[address] = handler
        tasks = self.inflight.setdefault(address, set())

        async def close(grace: float) -> None:
            del self.handlers[address]
            for task in list(tasks):
                task.cancel()

        return address, close

    def channel(self, address: str, iface: ServiceInterface) -> Channel:
        async def call(call: Call) -> bytes:
            handler = self.handlers.get(address)
            if handler is None:
                raise NotSent(f"cannot reach {address}: nothing serves it")
            task = asyncio.ensure_future(handler(call))
            self.inflight[address].add(task)
            try:
                return await task
            except asyncio.CancelledError:
                if task.cancelled() and not asyncio.current_task().cancelling():  # type: ignore[union-attr]
                    raise Lost(f"{address} stopped during the call") from None
                raise
            finally:
                self.inflight[address].discard(task)

        return LocalChannel(call)


class TestLocalTransport(TransportContract):
    @pytest.fixture
    def wire(self) -> Wire:
        """The in-process transport."""
        return LocalWire()
