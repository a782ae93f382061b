"""The control plane's side of the route table (:mod:`lumi.runtimes.routes`): the weights of
each service whose canary takes calls, published to every replica of the environment."""

from __future__ import annotations

from pathlib import Path

from lumi.runtimes.routes import POLL_INTERVAL, Routes, write_routes

SETTLE = 5 * POLL_INTERVAL  # every caller has followed a change by then


class Router:
    """The route table at ``path``: services routed by weight; the others evenly."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._weights: dict[str, dict[str, float]] = {}
        self._version = 0

    def split(self, service: str, stable: list[str], canary: list[str], percent: int) -> None:
        """``percent`` of the calls to ``service`` to the ``canary`` endpoints, the rest to the
        ``stable`` ones, shared evenly on each side."""
        weights = {url: (100 - percent) / len(stable) for url in stable}
        weights.update({url: percent / len(canary) for url in canary})
        self._weights[service] = weights
        self.publish()

    def clear(self, service: str) -> None:
        """Calls to ``service`` back on the endpoints its callers were started with."""
        if self._weights.pop(service, None) is not None:
            self.publish()

    def publish(self) -> None:
        self._version += 1
        table = Routes(self._version, {n: dict(w) for n, w in self._weights.items()})
        write_routes(self.path, table)
