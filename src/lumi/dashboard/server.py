"""The dashboard's web server: static assets and the ``/api`` routes, on loopback only.

Security on one machine:

* it binds 127.0.0.1 and nothing else (there is no option to change that);
* every ``/api`` request carries the per-run token (``X-Lumi-Token`` header, or ``token`` in the
  query for server-sent events, which cannot set headers); without it the answer is 401. The
  token is printed in the URL ``lumi run`` shows, so only someone who can read that terminal can
  call methods or replay events;
* the ``Host`` header must name the loopback address and port, which defeats DNS rebinding;
  a state-changing POST must be JSON and, when the browser sends an ``Origin``, come from the
  dashboard's own origin.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import secrets
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from lumi.config import AppConfig
from lumi.dashboard.api import routes
from lumi.dashboard.appstate import AppState
from lumi.dashboard.caller import Caller
from lumi.dashboard.eventview import EventView
from lumi.dashboard.hub import Hub
from lumi.dashboard.logview import LogFollower
from lumi.dashboard.metricsview import MetricsSampler
from lumi.dashboard.traces import TraceFeed

log = logging.getLogger("lumi.dashboard")

STATIC = Path(__file__).parent / "static"
HOST = "127.0.0.1"
DEFAULT_PORT = 4400
_ASSET_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'"
    ),
}

HandlerFn = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _bind(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:``port``; any free port when that one is taken."""
    for candidate in (port, 0) if port else (0,):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((HOST, candidate))
        except OSError:
            sock.close()
            continue
        sock.listen(128)
        sock.setblocking(False)
        return sock
    raise OSError(f"cannot listen on {HOST}")


class Dashboard:
    """The dashboard of the app in ``config``; ``await start()``, then ``url``."""

    def __init__(
        self, config: AppConfig, *, port: int = DEFAULT_PORT, token: str | None = None
    ) -> None:
        self.config = config
        self.port = port
        self.token = token or secrets.token_urlsafe(24)
        self.hub = Hub()
        self.state = AppState(config, self.hub)
        self.caller = Caller(config)
        self.events = EventView(config, self.hub)
        self.logs = LogFollower(config.root, self.hub)
        self.metrics = MetricsSampler(
            lambda: {name: self.state.endpoints(name) for name in self.state.interfaces},
            self.hub,
            tls=self.caller.operator_context,
        )
        self.traces = TraceFeed(config.root / ".lumi" / "traces.db", self.hub)
        self._runner: web.AppRunner | None = None

    @property
    def address(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def url(self) -> str:
        """The address with the token: the one URL that works."""
        return f"{self.address}/?token={self.token}"

    def application(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=1 << 20)
        app.add_routes(routes(self))
        app.add_routes([web.get("/", self._index), web.get("/static/{name}", self._asset)])
        return app

    async def start(self) -> None:
        """Load the interfaces, start the live feeds and listen on loopback."""
        self.state.load_interfaces()
        await self.state.start()
        await self.logs.start()
        try:
            await self.events.start(self.state.topics())
        except Exception as exc:  # the dashboard still works without the event log
            log.warning("dashboard: cannot open the event log: %s", exc)
            self.events.unreachable = f"cannot open the event log: {exc}"
        await self.metrics.start()
        await self.traces.start()
        sock = _bind(self.port)
        self.port = sock.getsockname()[1]
        self._runner = web.AppRunner(self.application(), access_log=None, shutdown_timeout=1.0)
        try:
            await self._runner.setup()
            await web.SockSite(self._runner, sock).start()
        except BaseException:
            sock.close()
            raise

    async def aclose(self) -> None:
        self.hub.close()  # ends the live streams, so the server can stop at once
        if self._runner is not None:
            await self._runner.cleanup()
        for part in (self.traces, self.metrics, self.events, self.logs, self.state, self.caller):
            with contextlib.suppress(Exception):
                await part.aclose()

    # -- security -----------------------------------------------------------------------------

    def _allowed_host(self, host: str | None) -> bool:
        return host in (f"{HOST}:{self.port}", f"localhost:{self.port}")

    @web.middleware
    async def _guard(self, request: web.Request, handler: HandlerFn) -> web.StreamResponse:
        if not self._allowed_host(request.host):
            return web.json_response(
                {"error": f"the dashboard answers only at {self.address}"}, status=403
            )
        if request.path.startswith("/api/"):
            given = request.headers.get("X-Lumi-Token") or request.query.get("token", "")
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return web.json_response(
                    {
                        "error": "missing or wrong dashboard token: open the URL that "
                        "lumi run printed (it ends in ?token=...)"
                    },
                    status=401,
                )
            if request.method not in ("GET", "HEAD"):
                origin = request.headers.get("Origin")
                if origin is not None and origin not in (
                    self.address,
                    f"http://localhost:{self.port}",
                ):
                    return web.json_response({"error": "cross-origin request refused"}, status=403)
                if request.content_type != "application/json":
                    return web.json_response(
                        {"error": "send JSON (Content-Type: application/json)"}, status=415
                    )
        response = await handler(request)
        if not response.prepared:
            for name, value in _HEADERS.items():
                response.headers.setdefault(name, value)
        return response

    # -- static assets --------------------------------------------------------------------------

    async def _index(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=(STATIC / "index.html").read_bytes(), content_type="text/html", charset="utf-8"
        )

    async def _asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        path = STATIC / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise web.HTTPNotFound()
        return web.Response(
            body=path.read_bytes(),
            content_type=_ASSET_TYPES.get(path.suffix, "application/octet-stream"),
            charset="utf-8" if path.suffix in _ASSET_TYPES else None,
        )
