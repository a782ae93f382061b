"""The control plane of one environment: ``python -m lumi.deploy.controlplane APP ENV``,
started in the background by ``lumi up`` and stopped by ``lumi down``.

It runs the environment (:class:`~lumi.deploy.environment.Environment`: the deployed
services under a supervisor) and serves a small control API on 127.0.0.1, on a free port
written to ``control.json``. Every request must carry ``Authorization: Bearer <token>``, the
token ``lumi up`` wrote (0600) in the environment's state folder — anyone who can read that
file is the environment's operator, nobody else is; a request without it is refused (401)::

    GET  /v1/status     what runs: versions, digests, replicas, the rollout in progress
    POST /v1/deploy     {"refs": ["Catalog@0.1.1"], "repo": null}   → progress, as NDJSON
    POST /v1/rollback   {"service": "Catalog", "repo": null}        → progress, as NDJSON
    POST /v1/down       stop every service, then the control plane

A deploy's response streams one JSON object per line: ``{"event": "progress", "message"}``
as the rollout goes, then ``{"event": "done", "record": {...}}`` or ``{"event": "error",
"error": "one line"}``. A rollout goes on to its end even if the client goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web

from lumi.deploy.environment import Environment, Say
from lumi.deploy.state import Control, Record
from lumi.model.errors import AppError, ConfigError, DefinitionError, LumiError
from lumi.runtimes.base import StartError

log = logging.getLogger("lumi.controlplane")
MAX_BODY = 64 * 1024
_HUMAN_ERRORS = (AppError, ConfigError, DefinitionError, StartError)


class ControlPlane:
    """The control API in front of one :class:`Environment`."""

    def __init__(self, app_root: Path, env: str) -> None:
        self.environment = Environment(app_root, env, emit=self._emit)
        self.state = self.environment.state
        self.token = ""
        self.phase = "starting"  # starting | running | stopping
        self._stop = asyncio.Event()
        self._work: set[asyncio.Task[Any]] = set()

    def _emit(self, source: str, line: str) -> None:
        sys.stdout.write(f"{source:<14} | {line}\n")
        sys.stdout.flush()

    def _say(self, message: str) -> None:
        self._emit("lumi", message)

    async def run(self) -> int:
        """Serve until ``lumi down`` or a signal; then stop every service."""
        self.state.prepare()
        self.token = self.state.new_token()
        api = web.Application(middlewares=[self._auth], client_max_size=MAX_BODY)
        api.router.add_get("/v1/status", self._status)
        api.router.add_post("/v1/deploy", self._deploy)
        api.router.add_post("/v1/rollback", self._rollback)
        api.router.add_post("/v1/down", self._down)
        runner = web.AppRunner(api, access_log=None, handle_signals=False)
        await runner.setup()
        sock = socket.create_server(("127.0.0.1", 0))
        await web.SockSite(runner, sock).start()
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):  # the supervisor takes them over once it runs
            loop.add_signal_handler(sig, self._stop.set)
        self.state.write_control(Control(pid=os.getpid(), url=url))
        self._say(f"control plane of {self.state.env} listening on {url} (pid {os.getpid()})")
        try:
            try:
                await self.environment.restore(self._say)
            except _HUMAN_ERRORS as exc:
                self._say(f"error: could not restore the deployed services: {exc}")
            self.phase = "running"
            stop = asyncio.create_task(self._stop.wait())
            ended = asyncio.create_task(self.environment.ended.wait())
            await asyncio.wait({stop, ended}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            ended.cancel()
        finally:
            self.phase = "stopping"
            self._say("stopping")
            for task in list(self._work):
                with contextlib.suppress(BaseException):
                    await task
            await self.environment.shutdown()
            await runner.cleanup()
            self.state.clear_control(os.getpid())
            self._say("stopped")
        return 0

    @web.middleware
    async def _auth(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.encode(), self.token.encode()
        ):
            where = self.state.token_file
            return _error(401, f"this API needs the environment's token: Bearer <{where}>")
        return await handler(request)

    async def _status(self, request: web.Request) -> web.Response:
        status = self.environment.status()
        status.update(pid=os.getpid(), phase=self.phase)
        return web.json_response(status)

    async def _body(self, request: web.Request, fields: set[str]) -> dict[str, Any]:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise _bad("the body is not JSON") from None
        if not isinstance(body, dict):
            raise _bad("the body is a JSON object")
        unknown = sorted(set(body) - fields)
        if unknown:
            raise _bad(f"unknown field {unknown[0]!r} (fields: {', '.join(sorted(fields))})")
        return body

    async def _deploy(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request, {"refs", "repo"})
        refs, repo = body.get("refs") or [], body.get("repo")
        if not isinstance(refs, list) or not all(isinstance(r, str) and r for r in refs):
            return _error(400, "refs is a list of SERVICE[@VERSION] strings")
        if repo is not None and not isinstance(repo, str):
            return _error(400, "repo is a repository URL")
        return await self._stream(
            request, lambda say: self.environment.deploy(refs, repo=repo, say=say)
        )

    async def _rollback(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request, {"service", "repo"})
        service, repo = body.get("service"), body.get("repo")
        if not isinstance(service, str) or not service:
            return _error(400, "service names the service to roll back")
        if repo is not None and not isinstance(repo, str):
            return _error(400, "repo is a repository URL")
        return await self._stream(
            request, lambda say: self.environment.rollback(service, repo=repo, say=say)
        )

    async def _stream(
        self, request: web.Request, work: Callable[[Say], Coroutine[Any, Any, Record | None]]
    ) -> web.StreamResponse:
        if self.phase != "running":
            return _error(409, f"the control plane is {self.phase}")
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        lines: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        def say(message: str) -> None:
            self._say(message)
            lines.put_nowait({"event": "progress", "message": message})

        task = asyncio.create_task(work(say))  # not cancelled if the client goes away
        self._work.add(task)
        task.add_done_callback(self._work.discard)
        task.add_done_callback(lambda _: lines.put_nowait({}))
        connected = True
        while True:
            line = await lines.get()
            if not line:
                break
            connected = connected and await _send(response, line)
        try:
            record = task.result()
            final: dict[str, Any] = {"event": "done", "record": None}
            if record is not None:
                final["record"] = record.model_dump(mode="json")
        except _HUMAN_ERRORS as exc:
            final = {"event": "error", "error": str(exc)}
        except LumiError as exc:
            final = {"event": "error", "error": f"{exc.code.value}: {exc.message}"}
        except Exception as exc:
            log.exception("a rollout failed")
            final = {"event": "error", "error": f"{type(exc).__name__}: {exc}"}
        if connected and await _send(response, final):
            await response.write_eof()
        return response

    async def _down(self, request: web.Request) -> web.Response:
        if self._work:
            return _error(409, "a rollout is in progress; lumi down once it ended (lumi status)")
        self._stop.set()
        return web.json_response({"stopping": True})


async def _send(response: web.StreamResponse, line: dict[str, Any]) -> bool:
    try:
        await response.write(json.dumps(line).encode() + b"\n")
    except (ConnectionError, RuntimeError):
        return False
    return True


def _bad(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def main() -> None:
    """``python -m lumi.deploy.controlplane APP_DIR ENV``."""
    app_root, env = Path(sys.argv[1]).resolve(), sys.argv[2]
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    sys.exit(asyncio.run(ControlPlane(app_root, env).run()))


if __name__ == "__main__":
    main()
