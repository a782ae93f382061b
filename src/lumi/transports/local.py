"""The local transport: calls a dispatcher in the same event loop, with no network.

Arguments and results still cross as JSON bytes, and metadata passes the same edge check, so
validation, limits, errors and isolation are exactly those of a remote call. As on every wire,
the callee's ``caller`` is never what the metadata claims: in-process there is no certificate,
so there is no caller.
"""

from __future__ import annotations

import dataclasses

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
        # The server side owns the call it is given (its observer and guard set fields of the
        # metadata in place), as a call read off a wire: hand it a copy, so the caller's
        # metadata is the same on its next attempt.
        return await self._handle(
            dataclasses.replace(call, metadata=dataclasses.replace(call.metadata, caller=None))
        )
