"""The route table of a deployed app: how much of each service's traffic goes to which endpoint.

``lumi deploy`` writes ``<app>/.lumi/routes.json`` (atomically) while it rolls out a canary::

    {"version": 7, "services": {"Catalog": {"http://127.0.0.1:4101": 45.0,
                                            "http://127.0.0.1:4102": 45.0,
                                            "http://127.0.0.1:4110": 10.0}}}

Every replica of the app follows it (:class:`RouteFollower`): its balancer for each listed
capability sends calls by those weights, to endpoints it may not have been started with (a
canary's). A service that is not listed is called over the endpoints the replica was started
with, evenly. The file is polled (one ``stat`` per interval): it works on every platform and
for every transport, and a change reaches every caller within one interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("lumi.routes")

POLL_INTERVAL = 0.1  # seconds; a rollout waits a few of these before it stops an endpoint


@dataclasses.dataclass(frozen=True)
class Routes:
    """Weights per endpoint, per service; ``version`` grows with every change."""

    version: int = 0
    services: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Routes:
        data = json.loads(text)
        services = {
            str(name): {str(url): float(weight) for url, weight in weights.items()}
            for name, weights in data["services"].items()
        }
        return cls(int(data["version"]), services)


def read_routes(path: Path) -> Routes | None:
    """The route table at ``path``; None if there is none (or it cannot be read)."""
    try:
        return Routes.from_json(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("ignoring the route table %s: %s", path, exc)
        return None


def write_routes(path: Path, routes: Routes) -> None:
    """Replace the route table at ``path`` in one step (readers see the old or the new)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".routes-", suffix=".json")
    with os.fdopen(fd, "w") as file:
        file.write(routes.to_json())
    os.replace(tmp, path)


class RouteFollower:
    """Calls ``apply`` with the route table at ``path`` now and whenever it changes."""

    def __init__(
        self, path: Path, apply: Callable[[Routes], None], *, interval: float = POLL_INTERVAL
    ) -> None:
        self.path = path
        self.apply = apply
        self.interval = interval
        self.version = -1
        self._seen: tuple[int, int, int] | None = None
        self._task: asyncio.Task[None] | None = None

    def check(self) -> None:
        """Apply the table if the file changed since the last look."""
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return
        seen = (info.st_ino, info.st_mtime_ns, info.st_size)
        if seen == self._seen:
            return
        self._seen = seen
        routes = read_routes(self.path)
        if routes is not None and routes.version != self.version:
            self.apply(routes)
            self.version = routes.version

    def start(self) -> None:
        self.check()
        self._task = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.check()
            except Exception:  # a bad table must never take the replica down
                log.exception("applying the route table %s failed", self.path)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
