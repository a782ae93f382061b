"""The app as the dashboard sees it: services, their interfaces, edges and live replica state.

Replica state comes from ``<app>/.lumi/registry.json``, which the supervisor rewrites on every
change, so the same code serves the dashboard inside ``lumi run`` and ``lumi dashboard`` in
another process. Interfaces are reflected from the app's classes at start and re-read from a
running replica's ``GET /interface`` whenever the registry shows a new fingerprint (after a hot
reload, say).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Any

from lumi.config import AppConfig
from lumi.dashboard.hub import Hub
from lumi.model.errors import AppError
from lumi.model.graph import start_order
from lumi.model.interface import ServiceInterface
from lumi.runtimes.discovery import Registry, read_registry
from lumi.runtimes.reload import fetch_interface
from lumi.security.issuer import operator_tls

log = logging.getLogger("lumi.dashboard")


class AppState:
    """What runs, how it is wired, and which replicas are up; publishes ``state`` on change."""

    def __init__(self, config: AppConfig, hub: Hub, *, poll: float = 0.2) -> None:
        self.config = config
        self.hub = hub
        self.poll = poll
        self.interfaces: dict[str, ServiceInterface] = {}
        self.registry: Registry | None = None
        self.problem = ""
        self._task: asyncio.Task[None] | None = None
        self._fetching: set[str] = set()

    def load_interfaces(self) -> None:
        """Reflect the app's classes (they are importable: the app runs from this folder)."""
        from lumi.model.reflect import reflect

        for cls in self.config.load_services():
            iface = reflect(cls).interface
            self.interfaces[iface.name] = iface

    async def start(self) -> None:
        self.refresh()
        self._task = asyncio.create_task(self._watch(), name="lumi-dashboard-state")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def refresh(self) -> bool:
        """Re-read the registry; True if anything changed."""
        try:
            registry: Registry | None = read_registry(self.config.root)
            problem = ""
        except AppError as exc:
            registry, problem = None, str(exc)
        changed = registry != self.registry or problem != self.problem
        self.registry, self.problem = registry, problem
        return changed

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll)
            if self.refresh():
                await self._update_interfaces()
                self.hub.publish("state", self.snapshot())

    async def _update_interfaces(self) -> None:
        if self.registry is None:
            return
        for name, state in self.registry.services.items():
            known = self.interfaces.get(name)
            ready = [
                url
                for r in state.replicas
                if r.state == "ready"
                for url in r.endpoints
                if url.startswith("http://")
            ]
            if (known is not None and known.fingerprint == state.fingerprint) or not ready:
                continue
            if name in self._fetching:
                continue
            self._fetching.add(name)
            try:
                fresh = await fetch_interface(ready[0], name, self._tls())
            finally:
                self._fetching.discard(name)
            if fresh is not None:
                self.interfaces[name] = fresh

    def _tls(self) -> ssl.SSLContext | None:
        """The operator's client context while the app speaks mTLS."""
        if self.registry is None or not self.registry.mtls:
            return None
        try:
            return operator_tls(self.config.root).client_context()
        except AppError:
            return None

    def endpoints(self, service: str) -> list[str]:
        if self.registry is None or service not in self.registry.services:
            return []
        return list(self.registry.services[service].endpoints)

    def order(self) -> list[str]:
        try:
            return start_order(self.interfaces.values())
        except AppError:
            return sorted(self.interfaces)

    def topics(self) -> dict[str, dict[str, Any]]:
        """``{topic: {publisher, event, doc, subscribers: [{service, handler, group}]}}``."""
        found: dict[str, dict[str, Any]] = {}
        for iface in self.interfaces.values():
            for event, info in iface.events.items():
                found[iface.topic(event)] = {
                    "topic": iface.topic(event),
                    "publisher": iface.name,
                    "event": event,
                    "doc": info.doc,
                    "key": info.key,
                    "subscribers": [],
                }
        for iface in self.interfaces.values():
            for sub in iface.subscriptions:
                entry = found.setdefault(
                    sub.topic,
                    {
                        "topic": sub.topic,
                        "publisher": sub.service,
                        "event": sub.event,
                        "doc": "",
                        "key": None,
                        "subscribers": [],
                    },
                )
                entry["subscribers"].append(
                    {"service": iface.name, "handler": sub.handler, "group": iface.name}
                )
        return found

    def snapshot(self) -> dict[str, Any]:
        """Everything the graph and the explorer draw, as JSON-able data."""
        services: list[dict[str, Any]] = []
        registry = self.registry
        for name in self.order():
            iface = self.interfaces[name]
            state = registry.services.get(name) if registry is not None else None
            services.append(
                {
                    "name": name,
                    "version": iface.version,
                    "doc": iface.doc,
                    "requires": list(iface.requires),
                    "methods": sorted(iface.methods),
                    "events": sorted(iface.events),
                    "subscriptions": [s.topic for s in iface.subscriptions],
                    "endpoints": list(state.endpoints) if state else [],
                    "fingerprint": iface.fingerprint,
                    "replicas": [r.model_dump() for r in state.replicas] if state else [],
                }
            )
        edges: list[dict[str, Any]] = []
        for iface in self.interfaces.values():
            for target in iface.requires:
                edges.append({"from": iface.name, "to": target, "kind": "calls", "label": ""})
        for topic, info in self.topics().items():
            for sub in info["subscribers"]:
                edges.append(
                    {
                        "from": info["publisher"],
                        "to": sub["service"],
                        "kind": "event",
                        "label": topic,
                    }
                )
        return {
            "app": self.config.name,
            "env": self.config.environment,
            "running": registry is not None,
            "mode": registry.mode if registry is not None else None,
            "problem": self.problem,
            "services": services,
            "edges": edges,
        }

    def interface_dicts(self) -> dict[str, Any]:
        return {name: iface.to_dict() for name, iface in self.interfaces.items()}
