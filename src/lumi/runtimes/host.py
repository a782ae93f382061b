"""Hosting services in this process: the part every runtime shares.

A :class:`Host` instantiates service classes, gives each an event sink, injects a client (or a
fake) for each capability, runs ``startup`` hooks in dependency order, subscribes event handlers
through the dispatcher, and undoes it all in reverse on stop. Runtimes differ only in where the
capability clients' calls go (a local dispatcher, an HTTP endpoint, ...).
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from lumi.brokers.base import Broker, Delivery, DeliveryHandler, Reject, Subscription
from lumi.model.errors import AppError, InvalidArgument
from lumi.model.graph import start_order
from lumi.model.reflect import Reflected, reflect
from lumi.model.service import Service
from lumi.pipeline import Call, Handler, Middleware
from lumi.pipeline.client import Client
from lumi.pipeline.consumer_dedupe import DedupeStore, idempotent_options
from lumi.pipeline.dispatch import Dispatcher, DispatchSettings
from lumi.pipeline.publish import EventSink
from lumi.runtime_services.resilience.resource import Resource, resources_of

log = logging.getLogger("lumi.host")

ChannelFor = Callable[[str], Handler]
"""Given a service name, the handler that sends calls to it (channel plus client middleware)."""


class Host:
    """Runs a set of service classes in this process."""

    def __init__(
        self,
        services: Sequence[type[Service]],
        *,
        broker: Broker,
        channel_for: ChannelFor,
        app: str = "app",
        middlewares: Iterable[Middleware] = (),
        fakes: Mapping[str, object] | None = None,
        external: Iterable[str] = (),
        publish_middlewares: Callable[[str], Iterable[Middleware]] | None = None,
        guards: Iterable[Middleware] = (),
        settings: Callable[[str], DispatchSettings] | None = None,
    ) -> None:
        self.reflected: dict[str, Reflected] = {}
        for cls in services:
            reflected = reflect(cls)
            if reflected.interface.name in self.reflected:
                raise AppError(f"two services are named {reflected.interface.name!r}")
            self.reflected[reflected.interface.name] = reflected
        self.fakes = dict(fakes or {})
        self.order = start_order(
            [r.interface for r in self.reflected.values()],
            provided={*self.fakes, *external},
        )
        self.broker = broker
        self.channel_for = channel_for
        self.app = app
        self.dispatcher = Dispatcher(middlewares, guards=guards)
        self._settings = settings
        self.instances: dict[str, Service] = {}
        self.resources: dict[str, dict[str, Resource[Any]]] = {}
        self._publish_middlewares = publish_middlewares
        self._started: list[str] = []
        self._subscriptions: list[Subscription] = []

    async def start(self) -> None:
        """Instantiate, inject, run ``startup`` in dependency order, then subscribe."""
        for name in self.order:
            reflected = self.reflected[name]
            instance = reflected.cls()
            publish = self._publish_middlewares(name) if self._publish_middlewares else ()
            instance._lumi_events = EventSink(  # type: ignore[attr-defined]
                self.broker, name, app=self.app, middlewares=publish
            )
            for attr, capability in reflected.capabilities.items():
                setattr(instance, attr, self._capability(capability))
            self.instances[name] = instance
            self.dispatcher.add(instance, self._settings(name) if self._settings else None)
        for name in self.order:
            await self._open_resources(name)
            try:
                await _maybe_await(self.instances[name].startup())
            except Exception as exc:
                raise AppError(f"{name}: startup failed: {type(exc).__name__}: {exc}") from exc
            self._started.append(name)
        for name in self.order:
            await self._subscribe(self.reflected[name])

    async def stop(self) -> None:
        """Stop consuming events (in-flight handlers finish first), then run ``shutdown``
        hooks in reverse dependency order; errors are logged, not raised."""
        while self._subscriptions:
            try:
                await self._subscriptions.pop().aclose()
            except Exception:
                log.exception("stopping an event subscription failed")
        while self._started:
            name = self._started.pop()
            try:
                await _maybe_await(self.instances[name].shutdown())
            except Exception:
                log.exception("%s: shutdown failed", name)
        for resources in self.resources.values():
            for resource in resources.values():
                await resource.aclose()
        self.resources.clear()
        self.dispatcher.close()

    async def _open_resources(self, name: str) -> None:
        """Open the service's declared resources, each waiting with backoff until it answers."""
        found = resources_of(self.instances[name])
        self.resources[name] = found
        for resource in found.values():
            try:
                await resource.open()
            except AppError as exc:
                raise AppError(f"{name}: {exc}") from exc

    def health(self) -> dict[str, Any]:
        """``{"ok": bool, "services": {name: {resource: health}}}`` for ``/readyz``."""
        services = {
            name: {attr: res.health() for attr, res in resources.items()}
            for name, resources in self.resources.items()
        }
        ok = bool(self._started) and all(
            h["ok"] for resources in services.values() for h in resources.values()
        )
        return {"ok": ok, "services": services}

    def _capability(self, capability: type[Service]) -> object:
        name = reflect(capability).interface.name
        if name in self.fakes:
            return self.fakes[name]
        return Client.for_service(capability, self.channel_for(name))

    async def _subscribe(self, reflected: Reflected) -> None:
        name = reflected.interface.name
        topics = collections.Counter(
            f"{sub.options.service}.{sub.options.event}" for sub in reflected.subscriptions
        )
        for sub in reflected.subscriptions:
            publisher = self.reflected.get(sub.options.service)
            if publisher is not None and sub.options.event not in publisher.interface.events:
                raise AppError(
                    f"{name}.{sub.attr} subscribes to {sub.options.service}.{sub.options.event}, "
                    f"but {sub.options.service} exports no such event (events: "
                    f"{', '.join(sorted(publisher.interface.events)) or 'none'})"
                )
            topic = f"{sub.options.service}.{sub.options.event}"
            # The group is the service; two handlers of one service for the same event each
            # get every event, so each needs a group of its own.
            group = name if topics[topic] == 1 else f"{name}-{sub.attr}"
            handler = _delivery_handler(self.dispatcher, name, sub.attr, sub.options.max_attempts)
            idempotent = idempotent_options(getattr(reflected.cls, sub.attr))
            if idempotent is not None:
                store = idempotent.store or self.broker.dedupe_store()
                handler = _deduplicated(handler, store, f"{topic}/{group}")
            subscription = await self.broker.subscribe(
                topic,
                group,
                handler,
                max_attempts=sub.options.max_attempts,
                start=sub.options.start,
            )
            self._subscriptions.append(subscription)

    def service(self, name: str) -> Service:
        return self.instances[name]


def _delivery_handler(
    dispatcher: Dispatcher, service: str, attr: str, max_attempts: int
) -> DeliveryHandler:
    async def deliver(delivery: Delivery) -> None:
        envelope = delivery.envelope
        call = Call(
            service=service,
            method=attr,
            body=envelope.data,
            metadata=envelope.metadata(),
            kind="event",
            topic=delivery.topic,
            event_id=envelope.id,
            attempt=delivery.attempt,
            max_attempts=max_attempts,
        )
        try:
            await dispatcher.handle(call)
        except InvalidArgument as exc:
            # A payload that does not validate will never validate: dead-letter it now.
            raise Reject(exc.message) from exc

    return deliver


def _deduplicated(handler: DeliveryHandler, store: DedupeStore, scope: str) -> DeliveryHandler:
    """Skip events whose id ``store`` has seen in ``scope``; record ids of handled ones.
    Copies of one event arriving together in this process run one after the other, so the
    second sees the first's record."""
    running: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    async def deliver(delivery: Delivery) -> None:
        event_id = delivery.envelope.id
        lock, users = running.setdefault(event_id, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                if await store.seen(scope, event_id):
                    log.info("skipping event %s: already handled (%s)", event_id, scope)
                    return
                await handler(delivery)
                await store.mark(scope, event_id)
        finally:
            users[0] -= 1
            if not users[0]:
                del running[event_id]

    return deliver


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value
