"""The call pipeline: the ``Call`` every transport, broker and runtime service shares, the
dispatcher that serves calls, the client that makes them, and the sink that publishes events."""

from lumi.pipeline.call import Call, Handler, Middleware, compose

__all__ = ["Call", "Handler", "Middleware", "compose"]
