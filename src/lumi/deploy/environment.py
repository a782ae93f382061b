"""The environment a control plane runs: its deployed services, and the rollouts that change
them.

A deploy goes in three phases, and only the third changes anything:

1. **plan** (:mod:`lumi.deploy.plan`): versions and digests from the repository, every range
   of every state the rollout passes through checked;
2. **install**: each new artifact pulled by digest (every digest, and with a trust key the
   signature, verified) and installed into its own environment (:mod:`lumi.deploy.installer`);
3. **roll out**, one service at a time, capabilities first: a new service is started and must
   become ready; a new version of a running one follows the environment's strategy —
   ``rolling`` (:meth:`Supervisor.restart_service`: new replicas on the same sockets, ready
   before the old drain) or ``canary`` (:mod:`lumi.deploy.canary`, weights through the route
   table, analysis of both versions' metrics, then promotion through the same restart). A
   canary that fails readiness, crosses a threshold or dies is rolled back: its weight goes to
   the stable version, then it drains. What already ran is never stopped first.

Every rollout is a :class:`~lumi.deploy.state.Record` in the history, saved as it goes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from lumi.config import AppConfig, load_config
from lumi.deploy.appdir import write_app
from lumi.deploy.canary import CanaryRollout
from lumi.deploy.errors import RefusedError, RolloutFailed
from lumi.deploy.installer import Installer
from lumi.deploy.plan import Move, Plan, make_plan
from lumi.deploy.routing import Router
from lumi.deploy.state import Change, DeployedService, EnvironmentState, Event, Record
from lumi.model.errors import AppError
from lumi.model.interface import ServiceInterface
from lumi.packaging import Repository
from lumi.packaging.errors import RepositoryError
from lumi.packaging.settings import repository_for
from lumi.paths import AppPaths
from lumi.runtimes.base import StartError
from lumi.runtimes.discovery import read_registry
from lumi.runtimes.supervisor import Emit, Supervisor

Say = Callable[[str], None]


class Environment:
    """The deployed services of environment ``env`` of the app in ``app_root``."""

    def __init__(
        self, app_root: Path, env: str, *, emit: Emit, installer: Installer | None = None
    ) -> None:
        self.app_root = app_root
        self.env = env
        self.state = EnvironmentState(app_root, env)
        self.installer = installer or Installer()
        self.deployed = self.state.deployed()
        self.supervisor: Supervisor | None = None
        self.ended = asyncio.Event()  # the supervisor stopped (a signal, or shutdown)
        self.rollout: dict[str, Any] | None = None
        self._emit = emit
        self._errors: list[str] = []
        self._run: asyncio.Task[int] | None = None
        self._running_canary: CanaryRollout | None = None
        self._lock = asyncio.Lock()
        self.router = Router(AppPaths(self.state.app).routes)

    def config(self) -> AppConfig:
        """The app's configuration for this environment, read afresh (it may have changed)."""
        return load_config(self.app_root, self.env)

    def emit(self, source: str, line: str) -> None:
        if source == "lumi" and line.startswith("error: "):
            self._errors.append(line.removeprefix("error: "))
        self._emit(source, line)

    # --- starting and stopping -------------------------------------------------------------

    async def restore(self, say: Say) -> None:
        """Start what was deployed when the control plane last stopped."""
        if not self.deployed.services:
            self.router.publish()
            return
        pythons = {name: Path(s.python) for name, s in self.deployed.services.items()}
        missing = [
            name for name, path in pythons.items() if not await asyncio.to_thread(path.exists)
        ]
        if missing:
            await self._reinstall(missing, say)
        refs = [f"{name}@{s.version}" for name, s in self.deployed.services.items()]
        say(f"starting {', '.join(refs)}")
        await self._start(self.config(), self.deployed.services)

    async def _reinstall(self, names: list[str], say: Say) -> None:
        """Environments someone deleted from the cache: pulled by digest and built again."""
        async with repository_for(self.config()) as repository:
            for name in names:
                service = self.deployed.services[name]
                say(f"reinstalling {name}@{service.version} (its environment is gone)")
                artifact = await repository.pull(name, service.digest)
                installed = await self.installer.install(artifact)
                moved = service.model_copy(update={"python": installed.python})
                self.deployed.services[name] = moved
        self.state.write_deployed(self.deployed)

    async def _start(self, config: AppConfig, services: dict[str, DeployedService]) -> None:
        """Start a supervisor running ``services``; StartError if one cannot start."""
        app = write_app(self.state.app, config, {n: s.entry for n, s in services.items()})
        self.router.publish()
        interfaces = {n: ServiceInterface.from_dict(s.interface) for n, s in services.items()}
        sup = Supervisor(app, emit=self.emit, interfaces=interfaces)
        sup.interpreters.update({name: s.python for name, s in services.items()})
        self._errors.clear()
        run = asyncio.create_task(sup.run())
        running = asyncio.create_task(sup.running.wait())
        await asyncio.wait({run, running}, return_when=asyncio.FIRST_COMPLETED)
        if not sup.running.is_set():
            running.cancel()
            await run
            raise StartError(self._errors[-1] if self._errors else "the services did not start")
        running.cancel()
        self.supervisor, self._run = sup, run
        run.add_done_callback(lambda _: self.ended.set())

    async def shutdown(self) -> None:
        """Stop every service (a canary first), in reverse dependency order."""
        if self._running_canary is not None:
            await self._running_canary.group.stop(self.config().defaults.grace_period)
        if self.supervisor is not None and self._run is not None:
            self.supervisor.request_stop()
            await self._run
        self.ended.set()

    # --- deploying -------------------------------------------------------------------------

    async def deploy(self, refs: list[str], *, repo: str | None, say: Say) -> Record | None:
        """Deploy ``refs`` (default: every service of the app, latest); None when nothing
        differs from what runs."""
        return await self._deploy(refs, "deploy", None, repo, say)

    async def rollback(self, service: str, *, repo: str | None, say: Say) -> Record | None:
        """Go back to the version ``service`` ran before its current one (rolling)."""
        current = self.deployed.services.get(service)
        if current is None:
            raise RefusedError(f"{service} is not deployed in {self.env}")
        for record in reversed(self.state.history()):
            for change in record.changes:
                undoes = change.to_digest == current.digest and change.outcome == "deployed"
                if change.service == service and undoes and change.from_digest:
                    ref = f"{service}@{change.from_digest}"
                    return await self._deploy([ref], "rollback", "rolling", repo, say)
        raise RefusedError(
            f"{service} has run no other version in {self.env} than {current.version}: "
            f"nothing to roll back to (lumi deploy {self.env} {service}@VERSION)"
        )

    async def _deploy(
        self,
        refs: list[str],
        action: Literal["deploy", "rollback"],
        strategy: str | None,
        repo: str | None,
        say: Say,
    ) -> Record | None:
        if self._lock.locked():
            doing = self.rollout or {}
            raise RefusedError(
                f"a rollout is in progress in {self.env} ({doing.get('what', 'starting')}); "
                f"wait for it (lumi status {self.env})"
            )
        async with self._lock:
            config = self.config()
            strategy = strategy or config.deploy.strategy
            async with repository_for(config, url=repo) as repository:
                plan = await make_plan(repository, config, self.deployed, refs)
                if not plan.moves:
                    say(f"nothing to deploy: {', '.join(plan.unchanged)} already deployed")
                    return None
                self._check_strategy(config, plan, strategy)
                installed = await self._install(repository, plan, say)
            changes = [
                Change(service=m.service, from_version=m.current_version, from_digest=m.current,
                       to_version=m.target.version, to_digest=m.target.digest)
                for m in plan.moves
            ]  # fmt: skip
            record = Record(id=self.state.next_id(), action=action, strategy=strategy,
                            started=time.time(), changes=changes)  # fmt: skip
            try:
                return await self._roll_out(config, plan, installed, strategy, record, say)
            finally:
                self.rollout = None

    def _check_strategy(self, config: AppConfig, plan: Plan, strategy: str) -> None:
        for move in plan.moves:
            old = self.deployed.services.get(move.service)
            if strategy != "canary" or old is None:
                continue
            rpc = config.binding(move.service).rpc or ["http"]
            if "http" not in rpc:
                raise RefusedError(
                    f"{move.service} serves {', '.join(rpc)} only, and the canary analysis "
                    f'reads each replica\'s /metrics over http: add "http" to '
                    f'services.{move.service}.rpc, or deploy with strategy = "rolling"'
                )
            if move.target.manifest.entry != old.entry:
                raise RefusedError(
                    f"{move.ref} moved its entry to {move.target.manifest.entry} (from "
                    f"{old.entry}); a canary runs beside the old entry: deploy it with "
                    f'strategy = "rolling"'
                )

    async def _install(
        self, repository: Repository, plan: Plan, say: Say
    ) -> dict[str, DeployedService]:
        """Pull each new artifact by digest and install it; nothing runs it yet."""
        found: dict[str, DeployedService] = {}
        for move in plan.moves:
            say(f"pulling {move.ref} {move.target.digest}")
            try:
                artifact = await repository.pull(move.service, move.target.digest)
            except RepositoryError as exc:  # a tampered blob, a bad signature: nothing ran
                raise type(exc)(f"cannot deploy {move.ref}: {exc}") from None
            installed = await self.installer.install(artifact)
            how = "installed" if installed.built else "already installed"
            say(f"{move.ref}: {how} in {installed.path}")
            manifest = artifact.manifest
            found[move.service] = DeployedService(
                version=manifest.version,
                digest=artifact.digest,
                entry=manifest.entry,
                fingerprint=manifest.fingerprint,
                interface=manifest.interface,
                requires=manifest.requires,
                python=installed.python,
            )
        return found

    def _commit(self, name: str, service: DeployedService) -> None:
        self.deployed.services[name] = service
        self.state.write_deployed(self.deployed)

    def _entries(self, services: dict[str, DeployedService]) -> dict[str, str]:
        return {name: s.entry for name, s in services.items()}

    def _record_say(self, record: Record, say: Say) -> Say:
        def tell(message: str) -> None:
            record.events.append(Event(at=time.time(), message=message))
            self.state.save_record(record)
            say(message)

        return tell

    async def _roll_out(
        self,
        config: AppConfig,
        plan: Plan,
        installed: dict[str, DeployedService],
        strategy: str,
        record: Record,
        say: Say,
    ) -> Record:
        tell = self._record_say(record, say)
        changes = {change.service: change for change in record.changes}
        try:
            if self.supervisor is None:
                services = {**self.deployed.services, **installed}
                tell(f"starting {', '.join(m.ref for m in plan.moves)}")
                try:
                    await self._start(config, services)
                except StartError as exc:
                    raise RolloutFailed(str(exc)) from None
                for move in plan.moves:
                    self._commit(move.service, installed[move.service])
                    changes[move.service].outcome = "deployed"
            else:
                for move in plan.moves:
                    self.rollout = {"what": f"{move.ref} ({strategy})", "service": move.service}
                    await self._move(config, move, installed[move.service], strategy, record, tell)
                    self._commit(move.service, installed[move.service])
                    changes[move.service].outcome = "deployed"
            record.outcome = "succeeded"
            tell(f"deployed {', '.join(m.ref for m in plan.moves)} to {self.env}")
        except RolloutFailed as exc:
            failed = next(c for c in record.changes if c.outcome == "pending")
            kept = self.deployed.services.get(failed.service)
            failed.outcome = "rolled back" if kept else "not started"
            for change in record.changes:
                if change.outcome == "pending":
                    change.outcome = "not started"
            record.outcome = "rolled back" if kept else "failed"
            record.reason = str(exc)
            serving = f"; {failed.service} {kept.version} keeps serving" if kept else ""
            tell(f"{record.outcome}: {exc}{serving}")
        record.finished = time.time()
        self.state.save_record(record)
        return record

    async def _move(
        self,
        config: AppConfig,
        move: Move,
        new: DeployedService,
        strategy: str,
        record: Record,
        tell: Say,
    ) -> None:
        sup = self.supervisor
        assert sup is not None
        name = move.service
        after = {**self.deployed.services, name: new}
        if move.current is None:
            tell(f"adding {move.ref}")
            sup.config = write_app(self.state.app, config, self._entries(after))
            sup.interpreters[name] = new.python
            try:
                await sup.add_service(name, ServiceInterface.from_dict(new.interface))
            except StartError as exc:
                sup.interpreters.pop(name, None)
                before = self._entries(self.deployed.services)
                sup.config = write_app(self.state.app, config, before)
                raise RolloutFailed(str(exc)) from None
            return
        if strategy == "canary":
            rollout = CanaryRollout(sup, self.router, config, move, new.python, record, tell)
            self._running_canary = rollout
            try:
                await rollout.run(lambda: self._replace(config, move, new), self._progress)
            finally:
                self._running_canary = None
            return
        tell(f"replacing every replica of {name} with {move.ref} (each ready before one drains)")
        await self._replace(config, move, new)

    async def _replace(self, config: AppConfig, move: Move, new: DeployedService) -> None:
        """Every replica of the service on its socket with the new version: the rolling
        update, and a canary's promotion."""
        sup = self.supervisor
        assert sup is not None
        name = move.service
        old = sup.interpreters[name]
        after = {**self.deployed.services, name: new}
        sup.config = write_app(self.state.app, config, self._entries(after))
        sup.interpreters[name] = new.python
        try:
            await sup.restart_service(name)
        except StartError as exc:
            sup.interpreters[name] = old
            before = self._entries(self.deployed.services)
            sup.config = write_app(self.state.app, config, before)
            raise RolloutFailed(f"{move.ref} is not ready: {exc}") from None

    # --- what runs ---------------------------------------------------------------------------

    def _progress(self, what: dict[str, Any]) -> None:
        self.rollout = what

    def status(self) -> dict[str, Any]:
        replicas: dict[str, Any] = {}
        if self.supervisor is not None:
            try:
                registry = read_registry(self.state.app)
            except AppError:
                pass
            else:
                for name, service in registry.services.items():
                    replicas[name] = [r.model_dump() for r in service.replicas]
        return {
            "env": self.env,
            "services": {
                name: {"version": s.version, "digest": s.digest, "replicas": replicas.get(name, [])}
                for name, s in self.deployed.services.items()
            },
            "rollout": self.rollout,
        }
