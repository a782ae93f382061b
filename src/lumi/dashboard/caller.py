"""Calls made from the API explorer, through Lumi's own client path.

Each call goes through a :class:`~lumi.client.Client` built from the service's interface, the
client middleware every caller gets (a CLIENT span in the app's span store, metrics, deadline,
retries) and the HTTP channel to the running replicas. So an explorer call is correlated and
traced like any other, and its trace can be shown next to its result.
"""

from __future__ import annotations

import time
from typing import Any

from lumi.client import Client
from lumi.config import AppConfig
from lumi.errors import LumiError, NotFound, Unavailable
from lumi.interface import ServiceInterface
from lumi.observability.tracing import setup_tracing
from lumi.pipeline import Call, Handler, compose
from lumi.runtimes import stack
from lumi.transports.http import HttpChannel

CALLER = "dashboard"


class Caller:
    """Sends explorer calls to an app's running services."""

    def __init__(self, config: AppConfig) -> None:
        store = stack.app_state_dir(config) / "traces.db" if config.tracing.store else None
        tracing = setup_tracing(service=CALLER, store=store, batch=True)
        self.runtime = stack.runtime_for(config, None, tracing=tracing)
        self._channels: dict[str, tuple[tuple[str, ...], HttpChannel]] = {}

    def _channel(self, service: str, endpoints: list[str]) -> HttpChannel:
        key = tuple(endpoints)
        found = self._channels.get(service)
        if found is not None and found[0] == key:
            return found[1]
        channel = HttpChannel(list(endpoints))
        self._channels[service] = (key, channel)
        return channel

    async def call(
        self,
        iface: ServiceInterface,
        method: str,
        arguments: dict[str, Any],
        endpoints: list[str],
        *,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        """``{ok, result | error, correlation_id, trace_id, ms}`` for one call."""
        if not endpoints:
            raise Unavailable(f"{iface.name} has no running replica")
        if method not in iface.methods:
            raise NotFound(f"{iface.name} has no method {method!r}")
        seen: dict[str, str | None] = {}

        async def capture(call: Call, next_handler: Handler) -> bytes:
            # Innermost: the metadata as sent, with the CLIENT span's traceparent in it.
            seen["correlation_id"] = call.metadata.correlation_id
            seen["traceparent"] = call.metadata.traceparent
            return await next_handler(call)

        channel = self._channel(iface.name, endpoints)
        handler = compose(channel.call, [*stack.client_middlewares(CALLER, self.runtime), capture])
        started = time.perf_counter()
        outcome: dict[str, Any]
        try:
            result = await Client(iface, handler).invoke(method, arguments, timeout=timeout)
            outcome = {"ok": True, "result": result}
        except LumiError as exc:
            outcome = {"ok": False, "error": exc.to_wire()}
        traceparent = seen.get("traceparent") or ""
        outcome.update(
            correlation_id=seen.get("correlation_id"),
            trace_id=traceparent[3:35] or None,
            ms=round((time.perf_counter() - started) * 1000, 2),
        )
        return outcome

    async def aclose(self) -> None:
        for _key, channel in self._channels.values():
            await channel.aclose()
        self._channels.clear()
        self.runtime.shutdown()
