"""Calls made from the API explorer, through Lumi's own client path.

Each call goes through a :class:`~lumi.pipeline.client.Client` built from the service's
interface, the client middleware every caller gets (a CLIENT span in the app's span store,
metrics, deadline, retries) and a balancer over the running replicas' endpoints. So an explorer
call is correlated and traced like any other, and its trace can be shown next to its result.
"""

from __future__ import annotations

import ssl
import time
from typing import Any

from lumi import transports
from lumi.config import AppConfig
from lumi.model.errors import AppError, LumiError, NotFound, Unavailable
from lumi.model.interface import ServiceInterface
from lumi.paths import AppPaths
from lumi.pipeline import Call, Handler, compose
from lumi.pipeline.client import Client
from lumi.runtime_services.observability.tracing import setup_tracing
from lumi.runtime_services.resilience.balancer import Balancer
from lumi.runtimes import stack
from lumi.security.identity import server_name
from lumi.security.issuer import operator_tls
from lumi.transports.base import ChannelSettings, transport_of
from lumi.transports.tls import Tls

CALLER = "dashboard"


class Caller:
    """Sends explorer calls to an app's running services."""

    def __init__(self, config: AppConfig) -> None:
        store = AppPaths(config.root).traces if config.tracing.store else None
        tracing = setup_tracing(service=CALLER, store=store, batch=True)
        self.runtime = stack.runtime_for(config, None, tracing=tracing)
        self.config = config
        self._tls: Tls | None = None  # the operator's certificate, read on the first call
        self._channels: dict[str, tuple[tuple[str, ...], Balancer]] = {}
        self._stale: list[Balancer] = []  # replaced when endpoints changed; closed at the end

    def _channel(self, iface: ServiceInterface, endpoints: list[str]) -> Balancer:
        """A balancer over the service's endpoints of its first transport (as a caller that
        picks no transport would use), behind the dashboard's own breakers."""
        chosen = transport_of(endpoints[0])
        urls = tuple(url for url in endpoints if transport_of(url) == chosen)
        found = self._channels.get(iface.name)
        if found is not None and found[0] == urls:
            return found[1]
        if found is not None:
            self._stale.append(found[1])
        transport = transports.get(chosen)
        settings = None
        if self.config.security.mtls:  # calls go as the operator (lumi run issued its bundle)
            settings = ChannelSettings(
                tls=self._operator(), server_name=server_name(self.config.name, iface.name)
            )
        channels = [transport.channel(url, iface, settings) for url in urls]
        breakers = self.runtime.breakers(CALLER)
        balancer = Balancer(iface.name, channels, breakers=breakers)
        self._channels[iface.name] = (urls, balancer)
        return balancer

    def _operator(self) -> Tls:
        if self._tls is None:
            self._tls = operator_tls(self.config.root)
        self._tls.reload()  # lumi run renews it; a new connection takes the new one
        return self._tls

    def operator_context(self) -> ssl.SSLContext | None:
        """The operator's TLS client context with mTLS on (None: off, or not issued yet)."""
        if not self.config.security.mtls:
            return None
        try:
            return self._operator().client_context()
        except AppError:
            return None

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

        if self._tls is not None:
            self._tls.reload()  # lumi run renews the operator's certificate
        balancer = self._channel(iface, endpoints)
        handler = compose(balancer, [*stack.client_middlewares(CALLER, self.runtime), capture])
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
        for _key, balancer in self._channels.values():
            await balancer.aclose()
        for balancer in self._stale:
            await balancer.aclose()
        self._channels.clear()
        self.runtime.shutdown()
