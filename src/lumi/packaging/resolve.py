"""``lumi resolve``: choose one published version of every interface an app requires.

A service declares what it needs with ranges (``requires = {Inventory = "^2.1"}`` in its
``[services.X]`` table); a published artifact records its own ranges, so requirements are
transitive. ``resolvelib`` (the backtracking resolver inside pip) picks the newest versions that
satisfy every range at once; services of the app itself take part with their current version
as the only candidate. When no choice works, :class:`ResolutionError` explains the conflict in
one paragraph: who requires what, through which chosen versions, and what is published.

The resolver runs in a worker thread; its provider asks the repository (async) for versions
and manifests through the event loop, each once.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import resolvelib

from lumi.model.semver import Range, parse, parse_range
from lumi.packaging.errors import ResolutionError
from lumi.packaging.repository import Repository


@dataclasses.dataclass(frozen=True)
class Requirement:
    name: str
    range: Range
    origin: str  # "Orders" (a service of the app) or "Billing 1.4.0" (a chosen version)

    def __str__(self) -> str:
        return f"{self.name} {self.range}"


@dataclasses.dataclass(frozen=True)
class Candidate:
    name: str
    version: str
    local: bool  # a service of the app being resolved

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}"


@dataclasses.dataclass(frozen=True)
class Resolved:
    """One chosen version; ``digest`` is ``None`` for the app's own services."""

    name: str
    version: str
    digest: str | None
    fingerprint: str
    requires: dict[str, str]


class _Provider(resolvelib.AbstractProvider):  # type: ignore[type-arg]
    def __init__(
        self,
        repository: Repository,
        loop: asyncio.AbstractEventLoop,
        local: Mapping[str, tuple[str, dict[str, str]]],
        preferred: Mapping[str, str],
    ) -> None:
        self.repository, self.loop = repository, loop
        self.local, self.preferred = local, preferred
        self.versions: dict[str, list[str]] = {}
        self.published: dict[tuple[str, str], Any] = {}
        self.seen: dict[str, list[Requirement]] = {}

    def _await(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def available(self, name: str) -> list[str]:
        if name in self.local:
            return [self.local[name][0]]
        if name not in self.versions:
            self.versions[name] = self._await(self.repository.versions(name))
        return self.versions[name]

    def manifest(self, name: str, version: str) -> Any:
        key = (name, version)
        if key not in self.published:
            self.published[key] = self._await(self.repository.manifest(name, version))
        return self.published[key]

    def identify(self, requirement_or_candidate: Requirement | Candidate) -> str:
        return requirement_or_candidate.name

    def get_preference(
        self,
        identifier: str,
        resolutions: Mapping[str, Candidate],
        candidates: Mapping[str, Iterator[Candidate]],
        information: Mapping[str, Iterator[Any]],
        backtrack_causes: Sequence[Any],
    ) -> Any:
        # Decide the most constrained names first (fewest candidates), as pip does.
        return sum(1 for _ in candidates[identifier])

    def find_matches(
        self,
        identifier: str,
        requirements: Mapping[str, Iterator[Requirement]],
        incompatibilities: Mapping[str, Iterator[Candidate]],
    ) -> Iterable[Candidate]:
        wanted = list(requirements[identifier])
        self.seen.setdefault(identifier, [])
        self.seen[identifier] += [r for r in wanted if r not in self.seen[identifier]]
        bad = {c.version for c in incompatibilities[identifier]}
        versions = [
            v
            for v in self.available(identifier)
            if v not in bad and all(v in r.range for r in wanted)
        ]
        versions.sort(key=lambda v: (v == self.preferred.get(identifier), parse(v)), reverse=True)
        return [Candidate(identifier, v, identifier in self.local) for v in versions]

    def is_satisfied_by(self, requirement: Requirement, candidate: Candidate) -> bool:
        return candidate.version in requirement.range

    def get_dependencies(self, candidate: Candidate) -> list[Requirement]:
        if candidate.local:
            ranges = self.local[candidate.name][1]
        else:
            ranges = self.manifest(candidate.name, candidate.version).manifest.requires
        return [Requirement(n, parse_range(t), candidate.label) for n, t in sorted(ranges.items())]


async def resolve(
    repository: Repository,
    local: Mapping[str, tuple[str, dict[str, str]]],
    *,
    preferred: Mapping[str, str] | None = None,
) -> dict[str, Resolved]:
    """Choose a version of every service required, transitively, by the app's services
    (``local``: name → (version, requires)). The app's own services are in the result too."""
    loop = asyncio.get_running_loop()
    provider = _Provider(repository, loop, local, preferred or {})
    roots = [
        Requirement(name, parse_range(text), service)
        for service, (_, ranges) in sorted(local.items())
        for name, text in sorted(ranges.items())
    ] + [Requirement(name, parse_range(version), name) for name, (version, _) in local.items()]
    resolver = resolvelib.Resolver(provider, resolvelib.BaseReporter())
    try:
        result = await asyncio.to_thread(resolver.resolve, roots, max_rounds=2000)
    except resolvelib.ResolutionImpossible as exc:
        raise ResolutionError(explain(exc.causes, provider, repository.url)) from None
    except resolvelib.ResolutionTooDeep:
        raise ResolutionError("the requirements need too much backtracking to resolve") from None
    out = {}
    for name, candidate in sorted(result.mapping.items()):
        if candidate.local:
            out[name] = Resolved(name, candidate.version, None, "", dict(local[name][1]))
            continue
        published = provider.manifest(name, candidate.version)
        manifest = published.manifest
        out[name] = Resolved(
            name, candidate.version, published.digest, manifest.fingerprint, dict(manifest.requires)
        )
    return out


def explain(causes: Iterable[Any], provider: _Provider, where: str) -> str:
    """One paragraph: each conflicting requirement with the chain that led to it, then what
    exists to choose from."""
    clauses: list[str] = []
    names: list[str] = []
    for cause in causes:
        requirement: Requirement = cause.requirement
        if requirement.name not in names:
            names.append(requirement.name)
        clause = f"{requirement.origin} requires {requirement} ({requirement.range.meaning()})"
        clause += _chain(requirement.origin, provider, depth=0)
        if clause not in clauses:
            clauses.append(clause)
    tails = []
    for name in names:
        available = provider.available(name)
        if not available:
            tails.append(f"{name} is not published in {where}")
        elif name in provider.local:
            tails.append(f"this app's {name} is {available[0]}")
        else:
            tails.append(f"published {name} versions: {', '.join(available[-10:])}")
    verdict = "no choice of versions satisfies them all" if len(clauses) > 1 else "nothing matches"
    return f"cannot resolve: {'; '.join(clauses)}; {verdict} ({'; '.join(tails)})."


def _chain(origin: str, provider: _Provider, depth: int) -> str:
    """`` — Billing 1.4.0 was chosen for Orders' Billing ^1.4`` when ``origin`` is a version."""
    name, _, version = origin.partition(" ")
    if not version or depth > 4:
        return ""
    via = next((r for r in provider.seen.get(name, []) if version in r.range), None)
    if via is None:
        return ""
    return f", where {origin} was chosen for {via.origin}'s {via}" + _chain(
        via.origin, provider, depth + 1
    )
