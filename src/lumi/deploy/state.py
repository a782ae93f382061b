"""What a deployed environment keeps on disk, in ``<app>/.lumi/env/<name>/`` (private, 0700)::

    control.json       the control plane's pid and API address, while it is up
    token              the control API's bearer token (0600, a new one at every ``lumi up``)
    deployed.json      what runs: per service its version, artifact digest and interpreter
    history.json       every rollout, oldest first
    app/               the deployed app's folder: a generated lumi.toml and its .lumi/ state
    control-plane.log  the control plane's output

Files are replaced atomically (write, then rename), so a reader never sees half of one.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any, Literal

import pydantic

from lumi.paths import AppPaths, private_dir

Outcome = Literal["running", "succeeded", "rolled back", "failed"]


class DeployedService(pydantic.BaseModel):
    """One deployed service: which artifact, and what running it needs."""

    version: str
    digest: str  # the artifact's manifest digest: what a restore pulls
    entry: str
    fingerprint: str
    interface: dict[str, Any]
    requires: dict[str, str] = {}
    python: str  # the interpreter of its installed artifact


class Deployed(pydantic.BaseModel):
    services: dict[str, DeployedService] = {}


class Sample(pydantic.BaseModel):
    """Calls a version handled during a window: how many, how many failed, their p99."""

    requests: int = 0
    errors: int = 0
    p99: float | None = None  # seconds

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def describe(self) -> str:
        p99 = "-" if self.p99 is None else f"{self.p99 * 1000:.1f} ms"
        return f"{self.requests} calls, {self.error_rate:.1%} errors, p99 {p99}"


class Step(pydantic.BaseModel):
    """One step of a canary: its weight, what both versions did, and the verdict."""

    weight: int
    canary: Sample
    stable: Sample
    verdict: str  # "passed", or why it failed


class Change(pydantic.BaseModel):
    service: str
    from_version: str | None = None
    from_digest: str | None = None
    to_version: str
    to_digest: str
    outcome: str = "pending"  # pending | deployed | rolled back | not started


class Event(pydantic.BaseModel):
    at: float  # unix time
    message: str


class Record(pydantic.BaseModel):
    """One rollout, as ``lumi deploy history`` shows it."""

    id: int
    action: Literal["deploy", "rollback"]
    strategy: str
    started: float
    finished: float | None = None
    changes: list[Change]
    outcome: Outcome = "running"
    reason: str = ""
    steps: list[Step] = []
    events: list[Event] = []


class Control(pydantic.BaseModel):
    pid: int
    url: str  # http://127.0.0.1:PORT


class EnvironmentState:
    """The files of environment ``env`` of the app in ``app_root``."""

    def __init__(self, app_root: Path, env: str) -> None:
        self.env = env
        self.dir = AppPaths(app_root).environment(env)
        self.app = self.dir / "app"
        self.control_file = self.dir / "control.json"
        self.token_file = self.dir / "token"
        self.deployed_file = self.dir / "deployed.json"
        self.history_file = self.dir / "history.json"
        self.log = self.dir / "control-plane.log"

    def prepare(self) -> None:
        private_dir(self.dir)
        private_dir(self.app)

    # --- the control plane's address and token ----------------------------------------------

    def new_token(self) -> str:
        token = secrets.token_urlsafe(32)
        _write(self.token_file, token + "\n")
        return token

    def token(self) -> str | None:
        try:
            return self.token_file.read_text().strip() or None
        except FileNotFoundError:
            return None

    def control(self) -> Control | None:
        try:
            return Control.model_validate_json(self.control_file.read_text())
        except (FileNotFoundError, pydantic.ValidationError):
            return None

    def write_control(self, control: Control) -> None:
        _write(self.control_file, control.model_dump_json())

    def clear_control(self, pid: int) -> None:
        found = self.control()
        if found is not None and found.pid == pid:
            self.control_file.unlink(missing_ok=True)

    # --- what is deployed, and the history --------------------------------------------------

    def deployed(self) -> Deployed:
        try:
            return Deployed.model_validate_json(self.deployed_file.read_text())
        except FileNotFoundError:
            return Deployed()

    def write_deployed(self, deployed: Deployed) -> None:
        _write(self.deployed_file, deployed.model_dump_json(indent=2))

    def history(self) -> list[Record]:
        try:
            data = json.loads(self.history_file.read_text())
        except FileNotFoundError:
            return []
        return [Record.model_validate(item) for item in data]

    def save_record(self, record: Record) -> None:
        """Add ``record`` to the history, or replace the one with its id."""
        records = [r for r in self.history() if r.id != record.id]
        records.append(record)
        records.sort(key=lambda r: r.id)
        _write(self.history_file, json.dumps([r.model_dump(mode="json") for r in records]))

    def next_id(self) -> int:
        return max((r.id for r in self.history()), default=0) + 1


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    with os.fdopen(fd, "w") as file:  # mkstemp creates it 0600
        file.write(text)
    os.replace(tmp, path)
