"""The runtime services every service gets: the middleware stacks, assembled in one place.

Every runtime (in-process, local process, container, ...) asks this module for the server-side
stack (around each handled call and event delivery) and the client-side stack (around each
outbound call), so logging, correlation, tracing, metrics, deadlines and retries are added once
and inherited by every transport and broker.
"""

from __future__ import annotations

from lumi.pipeline import Middleware


def server_middlewares(service: str) -> list[Middleware]:
    """Middleware around calls and event deliveries handled by ``service`` (outermost first)."""
    return []


def client_middlewares(service: str | None) -> list[Middleware]:
    """Middleware around calls made by ``service`` (None: a client outside any service)."""
    return []
