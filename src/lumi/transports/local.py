"""The local transport: calls a dispatcher in the same event loop, with no network.

Arguments and results still cross as JSON bytes, and metadata passes the same edge check, so
validation, limits, errors and isolation are exactly those of a remote call.
"""

from __future__ import annotations

from lumi.pipeline import Call, Handler
from lumi.pipeline.edge import check_metadata
from lumi.transports.base import Channel


class LocalChannel(Channel):
    """A channel straight into a dispatcher's handler."""

    def __init__(self, handle: Handler, endpoint: str = "local") -> None:
        self._handle = handle
        self.endpoint = endpoint

    async def call(self, call: Call) -> bytes:
        check_metadata(call.metadata)
        return await self._handle(call)
