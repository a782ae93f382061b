"""The transport contract: how calls travel. One abstract class per side; one module per backend.

A :class:`Channel` is the client side: it sends a :class:`~lumi.pipeline.Call` (JSON arguments
plus metadata) to a service and returns the JSON result, or raises the
:class:`~lumi.model.errors.LumiError` the callee raised; connection failures become
``UNAVAILABLE``. A
:class:`Server` is the serving side: it feeds incoming calls to a dispatcher's handler. Both are
async context managers.
"""

from __future__ import annotations

import abc
from types import TracebackType
from typing import Self

from lumi.pipeline import Call


class Channel(abc.ABC):
    """Sends calls to one service (over however many replicas it has)."""

    @abc.abstractmethod
    async def call(self, call: Call) -> bytes:
        """Send ``call``; return the JSON result or raise the callee's ``LumiError``."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class Server(abc.ABC):
    """Serves a dispatcher on one address."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Bind and start accepting calls; returns once it accepts them."""

    @property
    @abc.abstractmethod
    def address(self) -> str:
        """Where clients reach it, e.g. ``http://127.0.0.1:8123``."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Stop accepting, let in-flight calls finish (bounded), then close."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
