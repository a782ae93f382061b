"""What a deploy will change, decided from the repository alone, and whether it may.

``lumi deploy ENV Catalog@0.1.1`` names versions (or digests, or just a service for its
latest); with no names, every service of the app published in the repository, at its latest
version. Each is looked up with :meth:`Repository.manifest` (digest-checked, no layers); what
differs from the deployed digest is a :class:`Move`. Moves go capabilities first.

Before anything is touched, every state the rollout passes through is checked: while a
service's new version rolls out both versions run, so both must find their capabilities'
deployed versions inside their ranges, and every dependant's range must accept both. One
failing range refuses the whole deploy in one line naming the range and the versions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from lumi.config import AppConfig
from lumi.deploy.errors import RefusedError
from lumi.deploy.state import Deployed
from lumi.model.graph import start_order
from lumi.model.interface import ServiceInterface
from lumi.model.semver import parse_range
from lumi.packaging import Published, Repository, parse_ref


@dataclasses.dataclass(frozen=True)
class Running:
    """One version of a service in some state of the environment."""

    version: str
    requires: Mapping[str, str]
    note: str = ""  # "(deployed)", "(new)"


@dataclasses.dataclass(frozen=True)
class Move:
    """One service going to ``target`` (from ``current``, None for a new service)."""

    service: str
    current: str | None  # the deployed digest
    current_version: str | None
    target: Published

    @property
    def ref(self) -> str:
        return f"{self.service}@{self.target.version}"


@dataclasses.dataclass(frozen=True)
class Plan:
    moves: list[Move]  # capabilities first
    unchanged: list[str]  # named, but that digest is already deployed


async def app_services(repository: Repository, app: str) -> list[str]:
    """The services of ``app`` with a published version, by name."""
    found = []
    for name in await repository.services():
        if (await repository.manifest(name)).manifest.app == app:
            found.append(name)
    return found


async def make_plan(
    repository: Repository, config: AppConfig, deployed: Deployed, refs: Iterable[str]
) -> Plan:
    """The moves that deploy ``refs`` (default: every service of the app, latest versions)."""
    env = config.environment or "default"
    wanted = [parse_ref(ref) for ref in refs]
    if not wanted:
        wanted = [(name, None) for name in await app_services(repository, config.name)]
        if not wanted:
            raise RefusedError(f"nothing of app {config.name!r} is published in {repository.url}")
    names = [name for name, _ in wanted]
    if len(set(names)) != len(names):
        raise RefusedError(f"each service once, not {', '.join(names)}")
    targets: dict[str, Published] = {}
    for service, reference in wanted:
        published = await repository.manifest(service, reference)
        if published.manifest.app != config.name:
            raise RefusedError(
                f"{service}@{published.version} belongs to app {published.manifest.app!r}, "
                f"and {env} runs app {config.name!r}"
            )
        runtime = config.binding(service).runtime or "process"
        if runtime != "process":
            raise RefusedError(
                f"{service} runs on the {runtime!r} runtime in {env}; deploy runs each version "
                f'from its installed artifact as a local process: set runtime = "process"'
            )
        targets[service] = published
    current = deployed.services
    moves, unchanged = [], []
    for name, target in targets.items():
        now = current.get(name)
        if now is not None and now.digest == target.digest:
            unchanged.append(name)
        else:
            digest, version = (now.digest, now.version) if now else (None, None)
            moves.append(Move(name, digest, version, target))
    moves = _in_order(moves, deployed)
    check_states(moves, deployed, env)
    return Plan(moves, unchanged)


def _in_order(moves: list[Move], deployed: Deployed) -> list[Move]:
    interfaces = {n: ServiceInterface.from_dict(s.interface) for n, s in deployed.services.items()}
    for move in moves:
        interfaces[move.service] = move.target.manifest.service_interface()
    known = set(interfaces)
    missing = {r for i in interfaces.values() for r in i.requires if r not in known}
    order = start_order(interfaces.values(), provided=missing)  # missing: check_states says
    by_name = {move.service: move for move in moves}
    return [by_name[name] for name in order if name in by_name]


def check_states(moves: list[Move], deployed: Deployed, env: str) -> None:
    """Refuse unless every state of the rollout satisfies every running version's ranges."""
    state = {
        name: [Running(s.version, s.requires, "(deployed)")]
        for name, s in deployed.services.items()
    }
    for move in moves:
        new = Running(move.target.version, move.target.manifest.requires, "(new)")
        during = {**state, move.service: [*state.get(move.service, []), new]}
        _check(during, f"cannot deploy {move.ref} to {env}", env)
        state = {**state, move.service: [new]}


def _check(state: Mapping[str, list[Running]], what: str, env: str) -> None:
    for name, versions in state.items():
        for running in versions:
            for capability, text in sorted(running.requires.items()):
                wanted = parse_range(text)
                there = state.get(capability)
                who = f"{name} {running.version} {running.note}".rstrip()
                if not there:
                    raise RefusedError(
                        f"{what}: {who} requires {capability} {text}, which is not deployed "
                        f"in {env} (deploy it too: lumi deploy {env} {capability}@VERSION)"
                    )
                for other in there:
                    if other.version not in wanted:
                        raise RefusedError(
                            f"{what}: {who} requires {capability} {text} "
                            f"({wanted.meaning()}), and {capability} {other.version} "
                            f"{other.note} is outside it; deploy {capability} in that range, "
                            f"or a version of {name} that accepts {other.version}"
                        )
