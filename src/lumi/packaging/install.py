"""``lumi install``: the resolved interfaces' generated Python clients, importable by the app.

The lock, ``lumi-requires.lock`` next to ``lumi.toml`` (JSON, sorted), records the ranges it
was resolved from and, for each service of another team, the version, manifest digest and
interface fingerprint chosen. ``install`` re-resolves only when the ranges changed (or with
``upgrade``), pulls each locked artifact *by digest* (so a re-tagged or tampered artifact is
refused), and only after every pull verified writes each client package into
``<app>/.lumi/site-packages/<service>_client/`` (plus its ``interface.json``). The app's config
puts that folder on ``sys.path``, so ``import inventory_client`` works in every service of the
app and under ``lumi run``; other scripts add it to ``PYTHONPATH``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from lumi.config import AppConfig
from lumi.packaging import oci
from lumi.packaging.errors import IntegrityError, ResolutionError
from lumi.packaging.repository import Repository
from lumi.packaging.resolve import Resolved, resolve
from lumi.packaging.versioning import static_versions

LOCK_FILE = "lumi-requires.lock"
SITE = Path(".lumi") / "site-packages"
_FORMAT = 1


@dataclasses.dataclass(frozen=True)
class Lock:
    requires: dict[str, dict[str, str]]  # service of the app → its ranges
    resolved: dict[str, Resolved]  # other teams' services only

    def to_text(self) -> str:
        data = {
            "format": _FORMAT,
            "requires": self.requires,
            "resolved": {
                name: {
                    "version": r.version,
                    "digest": r.digest,
                    "fingerprint": r.fingerprint,
                    "requires": r.requires,
                }
                for name, r in sorted(self.resolved.items())
            },
        }
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def read(cls, path: Path) -> Lock | None:
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            resolved = {
                name: Resolved(
                    name,
                    item["version"],
                    item["digest"],
                    item["fingerprint"],
                    dict(item["requires"]),
                )
                for name, item in data["resolved"].items()
            }
            return cls({k: dict(v) for k, v in data["requires"].items()}, resolved)
        except (ValueError, KeyError, TypeError):
            raise ResolutionError(
                f"{path}: not a Lumi lock; delete it and run lumi resolve"
            ) from None


def app_requirements(config: AppConfig) -> dict[str, tuple[str, dict[str, str]]]:
    """Each service of the app: its version (read from source, not imported) and the ranges
    of its config's ``requires``."""
    return {
        name: (version, dict(sorted(config.service(name).requires.items())))
        for name, version in static_versions(config).items()
    }


async def resolve_app(
    repository: Repository, config: AppConfig, *, upgrade: bool = False
) -> tuple[Lock, bool]:
    """The app's lock: the existing one if its ranges are unchanged (and not ``upgrade``),
    else a fresh resolution preferring the locked versions. Returns ``(lock, changed)``."""
    local = app_requirements(config)
    requires = {name: ranges for name, (_, ranges) in sorted(local.items()) if ranges}
    path = config.root / LOCK_FILE
    old = Lock.read(path)
    if old is not None and old.requires == requires and not upgrade:
        return old, False
    preferred = {} if upgrade or old is None else {n: r.version for n, r in old.resolved.items()}
    chosen = await resolve(repository, local, preferred=preferred)
    lock = Lock(requires, {n: r for n, r in chosen.items() if n not in local})
    text = lock.to_text()
    changed = old is None or old.to_text() != text
    if changed:
        path.write_text(text)
    return lock, changed


async def install(repository: Repository, config: AppConfig, lock: Lock) -> list[Resolved]:
    """Pull every locked artifact by digest and install its Python client; all pulls are
    verified before anything is written."""
    packages: dict[str, dict[str, bytes]] = {}
    for name, resolved in sorted(lock.resolved.items()):
        if resolved.digest is None:
            continue
        artifact = await repository.pull(name, resolved.digest)
        if artifact.manifest.fingerprint != resolved.fingerprint:
            raise IntegrityError(f"{name}@{resolved.version}: interface differs from the lock")
        files = oci.read_targz(artifact.layer(oci.CLIENTS_MEDIA_TYPE).data)
        for path, data in files.items():
            top, _, rest = path.partition("/")
            if top == "python" and rest:
                package, _, inner = rest.partition("/")
                packages.setdefault(package, {})[inner] = data
        own = _snake(name)
        if own in packages:
            packages[own]["interface.json"] = json.dumps(
                artifact.manifest.interface, indent=2
            ).encode()
    _write_site(config.root / SITE, packages, lock)
    return [r for r in lock.resolved.values() if r.digest is not None]


def _snake(name: str) -> str:
    from lumi.codegen.schema import snake

    return f"{snake(name)}_client"


def _write_site(site: Path, packages: dict[str, dict[str, bytes]], lock: Lock) -> None:
    site.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=site))
    try:
        for package, files in packages.items():
            for inner, data in files.items():
                target = staging / package / inner
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        for package in packages:
            final = site / package
            if final.exists():
                shutil.rmtree(final)
            os.replace(staging / package, final)
        record: dict[str, Any] = {n: r.version for n, r in sorted(lock.resolved.items())}
        (site / "lumi-installed.json").write_text(json.dumps(record, indent=2) + "\n")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
