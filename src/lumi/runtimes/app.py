"""``lumi.App``: a whole app in one event loop, for scripts and tests.

>>> async with lumi.App([Inventory, Orders, Mailer]) as app:
...     order_id = await app.client(Orders).place(sku="a", qty=1)

Calls go through the same dispatcher, validation and middleware as over a network (arguments and
results cross as JSON), events through a broker (memory by default). The runtime services
(correlation, tracing, metrics, access logs, deadlines, retries, idempotency, and circuit
breakers per method, behind a balancer over the in-process channel) wrap every call as in any
other runtime; ``observe=False`` leaves them out (a bare pipeline, for benchmarks).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar, cast

from lumi.brokers.base import Broker
from lumi.brokers.memory import MemoryBroker
from lumi.model.errors import AppError
from lumi.model.reflect import reflect
from lumi.model.service import Service
from lumi.pipeline import Handler, Middleware, compose
from lumi.pipeline.client import Client
from lumi.runtime_services.resilience.balancer import Balancer
from lumi.runtimes import stack
from lumi.runtimes.host import Host
from lumi.transports.local import LocalChannel

S = TypeVar("S", bound=Service)


class App:
    """Runs services in this process. Use as ``async with App([...]) as app``."""

    def __init__(
        self,
        services: Sequence[type[Service]],
        *,
        name: str = "app",
        broker: Broker | None = None,
        fakes: Mapping[type[Service] | str, object] | None = None,
        middlewares: Iterable[Middleware] = (),
        client_middlewares: Iterable[Middleware] = (),
        observe: bool = True,
        runtime: stack.RuntimeServices | None = None,
    ) -> None:
        self.name = name
        self.broker: Broker = broker if broker is not None else MemoryBroker()
        self._owns_broker = False  # set when start() starts it: then stop() closes it
        self.runtime = runtime if runtime is not None else stack.current().fresh()
        server = list(middlewares)
        client = list(client_middlewares)
        guards: list[Middleware] = []
        publish = None
        if observe:
            # One dispatcher serves every service here, so the server stack is per app; the
            # observer reads the service name from each call.
            server = [*stack.server_middlewares("", self.runtime), *server]
            client = [*stack.client_middlewares(None, self.runtime), *client]
            guards = stack.server_guards("", self.runtime)

            def publish(service: str) -> list[Middleware]:
                return stack.publish_middlewares(service, self.runtime)

        self._client_middlewares = client
        fake_by_name = {
            (key if isinstance(key, str) else reflect(key).interface.name): value
            for key, value in (fakes or {}).items()
        }
        self.host = Host(
            services,
            broker=self.broker,
            channel_for=self._channel_for,
            app=name,
            middlewares=server,
            fakes=fake_by_name,
            publish_middlewares=publish,
            guards=guards,
        )
        channel = LocalChannel(self.host.dispatcher.handle)
        inner: Handler = channel.call
        if observe:
            inner = Balancer(name, [channel], breakers=self.runtime.breakers(None))
        self._invoke = compose(inner, self._client_middlewares)
        self._running = False

    def _channel_for(self, service: str) -> Handler:
        return self._invoke

    async def start(self) -> None:
        if not self.broker.started:
            await self.broker.start()
            self._owns_broker = True
        try:
            await self.host.start()
        except BaseException:
            await self.stop()
            raise
        self._running = True

    async def stop(self) -> None:
        self._running = False
        try:
            await self.host.stop()
        finally:
            if self._owns_broker:
                await self.broker.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def client(self, service: type[S]) -> S:
        """A typed client of ``service``; its methods are awaitable remote calls."""
        name = reflect(service).interface.name
        if name not in self.host.reflected:
            raise AppError(f"{name} is not in this app (services: {', '.join(self.host.order)})")
        return cast(S, Client.for_service(service, self._invoke))

    def json_client(self, service: str) -> Client:
        """A client of ``service`` built from its interface alone: arguments and results are
        plain JSON values, so a test can send what the typed client would not let it write."""
        if service not in self.host.reflected:
            raise AppError(f"{service} is not in this app (services: {', '.join(self.host.order)})")
        return Client(self.host.reflected[service].interface, self._invoke)

    def service(self, service: type[S]) -> S:
        """The running instance of ``service`` (for assertions in tests)."""
        return cast(S, self.host.service(reflect(service).interface.name))

    @property
    def services(self) -> dict[str, Any]:
        return dict(self.host.instances)

    def health(self) -> dict[str, Any]:
        """Readiness: every service started and every declared resource connected."""
        return self.host.health()
