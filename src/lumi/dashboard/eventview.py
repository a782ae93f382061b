"""Events for the dashboard: every topic of the app read live, with rates and dead letters.

The dashboard joins each topic as an ephemeral reader (``group=None``: it keeps no cursor and
takes nothing from the app's consumer groups), counts what passes for the rates, keeps the last
events of each topic for a tail that starts with context, and publishes each one on the hub.
Dead letters and replay go through the broker contract, so this works on every broker that the
dashboard's process can reach (all but ``memory``, which lives inside one process).
"""

from __future__ import annotations

import collections
import json
import logging
import time
from typing import Any

from lumi.brokers import create_broker, scheme_of
from lumi.brokers.base import Broker, Delivery, Subscription
from lumi.config import AppConfig
from lumi.dashboard.hub import Hub

log = logging.getLogger("lumi.dashboard")

_KEEP = 50  # events kept per topic for the start of a tail
_WINDOW = 60.0  # seconds of arrival times kept for the rates


def event_json(envelope: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(envelope.to_json())
    return data


class EventView:
    """Topics, their recent events and rates, dead letters and replay."""

    def __init__(self, config: AppConfig, hub: Hub) -> None:
        self.config = config
        self.hub = hub
        self.brokers: dict[str, Broker] = {}
        self.topic_broker: dict[str, Broker] = {}
        self.unreachable = ""
        self.recent: dict[str, collections.deque[dict[str, Any]]] = {}
        self.arrivals: dict[str, collections.deque[float]] = {}
        self.totals: collections.Counter[str] = collections.Counter()
        self._subscriptions: list[Subscription] = []

    def _broker_for(self, service: str) -> Broker | None:
        url = self.config.binding(service).events or "embedded"
        if scheme_of(url) == "memory":
            self.unreachable = (
                "this app's events use the memory broker, which lives inside one process; "
                'use events = "embedded" (or a network broker) to see them here'
            )
            return None
        if url not in self.brokers:
            self.brokers[url] = create_broker(url, app_dir=self.config.root)
        return self.brokers[url]

    async def start(self, topics: dict[str, dict[str, Any]]) -> None:
        """Start reading ``topics`` (``{topic: {publisher, ...}}``) from the next event on."""
        for each in {id(b): b for b in self._brokers_of(topics)}.values():
            await each.start()
        for topic in topics:
            broker = self.topic_broker.get(topic)
            if broker is None:
                continue
            self.recent[topic] = collections.deque(maxlen=_KEEP)
            self.arrivals[topic] = collections.deque()
            try:
                subscription = await broker.subscribe(topic, None, self._seen, start="latest")
            except Exception as exc:  # a broker that is down must not take the dashboard down
                log.warning("cannot read topic %s: %s", topic, exc)
                continue
            self._subscriptions.append(subscription)

    def _brokers_of(self, topics: dict[str, dict[str, Any]]) -> list[Broker]:
        found = []
        for topic, info in topics.items():
            broker = self._broker_for(info["publisher"])
            if broker is not None:
                self.topic_broker[topic] = broker
                found.append(broker)
        return found

    async def _seen(self, delivery: Delivery) -> None:
        now = time.time()
        topic = delivery.topic
        event = event_json(delivery.envelope)
        self.recent.setdefault(topic, collections.deque(maxlen=_KEEP)).append(event)
        arrivals = self.arrivals.setdefault(topic, collections.deque())
        arrivals.append(now)
        while arrivals and arrivals[0] < now - _WINDOW:
            arrivals.popleft()
        self.totals[topic] += 1
        self.hub.publish("event", {"topic": topic, "event": event})

    def rates(self, topic: str) -> dict[str, float]:
        """Events per second over the last 10 s and the last minute; the count seen."""
        now = time.time()
        arrivals = self.arrivals.get(topic, collections.deque())
        last10 = sum(1 for t in arrivals if t >= now - 10)
        last60 = sum(1 for t in arrivals if t >= now - _WINDOW)
        return {
            "per_second_10s": round(last10 / 10, 2),
            "per_second_60s": round(last60 / _WINDOW, 3),
            "seen": self.totals[topic],
        }

    async def dead_letters(self) -> list[dict[str, Any]]:
        letters: list[dict[str, Any]] = []
        for broker in {id(b): b for b in self.topic_broker.values()}.values():
            for letter in await broker.dead_letters(limit=500):
                letters.append(
                    {
                        "id": letter.envelope.id,
                        "topic": letter.topic,
                        "group": letter.group,
                        "attempts": letter.attempts,
                        "time": letter.time,
                        "reason": letter.reason,
                        "event": event_json(letter.envelope),
                    }
                )
        letters.sort(key=lambda d: str(d["time"]))
        return letters

    async def replay(self, topic: str, group: str | None, ids: list[str] | None) -> int:
        broker = self.topic_broker.get(topic)
        if broker is None:
            return 0
        count: int = await broker.replay(topic, group, event_ids=ids or None)
        return count

    async def aclose(self) -> None:
        while self._subscriptions:
            await self._subscriptions.pop().aclose()
        for broker in self.brokers.values():
            await broker.aclose()
