"""The CLI's side of the control plane: start it (``lumi up``), talk to its API, stop it.

The control plane of an environment is found through its state folder: ``control.json``
(pid and URL) and ``token``. Reading the token needs the folder's owner, which is the point.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from lumi.deploy.errors import ControlError
from lumi.deploy.state import Control, EnvironmentState

UP_TIMEOUT = 120.0  # restoring services may install their artifacts
DOWN_TIMEOUT = 120.0


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (reaping it first if it is this process's child)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0]:
            return False
    except ChildProcessError:
        pass  # not ours: lumi up ran in another process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running(state: EnvironmentState) -> Control | None:
    """The control plane's address, if its process is alive."""
    control = state.control()
    return control if control is not None and alive(control.pid) else None


class ControlClient:
    """Requests to the control plane of one environment (an async context manager)."""

    def __init__(self, state: EnvironmentState) -> None:
        self.state = state
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ControlClient:
        timeout = aiohttp.ClientTimeout(total=None, connect=10)  # a rollout takes its time
        self._session = aiohttp.ClientSession(timeout=timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    def _target(self) -> tuple[str, str]:
        env = self.state.env
        control = running(self.state)
        if control is None:
            raise ControlError(f"environment {env!r} is not up (start it: lumi up {env})")
        token = self.state.token()
        if token is None:
            raise ControlError(f"no control token in {self.state.token_file} (lumi up {env})")
        return control.url, token

    async def _send(self, method: str, path: str, body: Any = None) -> aiohttp.ClientResponse:
        assert self._session is not None, "use ControlClient as an async context manager"
        url, token = self._target()
        try:
            response = await self._session.request(
                method, url + path, json=body, headers={"Authorization": f"Bearer {token}"}
            )
        except aiohttp.ClientError as exc:
            raise ControlError(
                f"the control plane of {self.state.env!r} does not answer at {url}: {exc}"
            ) from None
        if response.status != 200:
            try:
                message = str((await response.json()).get("error", ""))
            except (ValueError, aiohttp.ContentTypeError):
                message = (await response.text())[:200]
            raise ControlError(f"the control plane refused: {message or response.reason}")
        return response

    async def status(self) -> dict[str, Any]:
        async with await self._send("GET", "/v1/status") as response:
            data: dict[str, Any] = await response.json()
            return data

    async def stream(
        self, path: str, body: dict[str, Any], progress: Callable[[str], None]
    ) -> dict[str, Any] | None:
        """POST ``body``, report each progress message; the final record (None: nothing was
        done). A rollout's error is raised as a ControlError with its one line."""
        async with await self._send("POST", path, body) as response:
            async for raw in response.content:
                if not raw.strip():
                    continue
                line = json.loads(raw)
                if line.get("event") == "progress":
                    progress(str(line["message"]))
                elif line.get("event") == "error":
                    raise ControlError(str(line["error"]))
                elif line.get("event") == "done":
                    record: dict[str, Any] | None = line.get("record")
                    return record
        raise ControlError("the control plane ended the response before the rollout's end")

    async def down(self) -> None:
        """Ask the control plane to stop (it exits soon after answering)."""
        async with await self._send("POST", "/v1/down", {}):
            pass


async def _request(state: EnvironmentState, call: Callable[[ControlClient], Any]) -> Any:
    async with ControlClient(state) as client:
        return await call(client)


def start(app_root: Path, env: str, *, timeout: float = UP_TIMEOUT) -> tuple[Control, bool]:
    """Start the control plane of ``env`` in the background and wait until it serves; returns
    its address and whether it was started now (False: it was up already)."""
    state = EnvironmentState(app_root, env)
    found = running(state)
    if found is not None:
        return found, False
    state.prepare()
    state.control_file.unlink(missing_ok=True)
    log = os.open(state.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        # posix_spawn, not Popen: the control plane outlives this process, which must not
        # wait for it; its own session keeps a terminal's Ctrl-C away from it.
        pid = os.posix_spawn(
            sys.executable,
            [sys.executable, "-m", "lumi.deploy.controlplane", str(app_root), env],
            {**os.environ, "PYTHONUNBUFFERED": "1"},
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, log, 1),
                (os.POSIX_SPAWN_DUP2, log, 2),
            ],
            setsid=True,
        )
    finally:
        os.close(log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.waitpid(pid, os.WNOHANG)[0]:
            raise ControlError(f"the control plane of {env!r} exited: {_last_words(state)}")
        control = state.control()
        if control is not None and control.pid == pid:
            phase = asyncio.run(_phase(state))
            if phase == "running":
                return control, True
        time.sleep(0.05)
    raise ControlError(f"the control plane of {env!r} did not start in {timeout:g}s "
                       f"({_last_words(state)})")  # fmt: skip


async def _phase(state: EnvironmentState) -> str:
    try:
        status = await _request(state, lambda client: client.status())
    except ControlError:
        return "starting"
    return str(status.get("phase"))


def stop(app_root: Path, env: str, *, timeout: float = DOWN_TIMEOUT) -> bool:
    """Stop the control plane of ``env`` and wait until it exited; False if it was not up."""
    state = EnvironmentState(app_root, env)
    control = running(state)
    if control is None:
        return False
    pid = control.pid
    asyncio.run(_request(state, lambda client: client.down()))
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            raise ControlError(f"the control plane of {env!r} (pid {pid}) did not stop in "
                               f"{timeout:g}s; see {state.log}")  # fmt: skip
        time.sleep(0.05)
    return True


def _last_words(state: EnvironmentState) -> str:
    try:
        lines = [line for line in state.log.read_text().splitlines() if line.strip()]
    except OSError:
        return "no output"
    return lines[-1].split("| ", 1)[-1] if lines else "no output"
