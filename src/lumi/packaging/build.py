"""``lumi build``: one OCI artifact per service, from the app's source and lock.

Steps: read the app's services in a child process; stage the source (``source.stage``); build
the wheel with PyPA ``build`` at SOURCE_DATE_EPOCH; take or write the lock; generate the
Python and TypeScript clients; write each service's artifact into the build layout
``<app>/.lumi/build`` (an OCI image layout, the same format as the repository), recording the
build in ``last-build.json`` for ``lumi publish``.

Reproducible: the artifact is a function of the staged source, the lock, the versions of Lumi
and the build backend, and the pinned time — never of the folder's path, file mtimes, the
clock or the order files were found in.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import lumi
from lumi.codegen import get_generator
from lumi.codegen.base import GenerateRequest
from lumi.config import AppConfig, load_config
from lumi.model.semver import VersionError, parse
from lumi.model.suggest import close_matches
from lumi.packaging import oci
from lumi.packaging.artifact import (
    Artifact,
    ArtifactManifest,
    Bindings,
    Provenance,
    repository_name,
    tag_of,
)
from lumi.packaging.errors import BuildError
from lumi.packaging.introspect import ServiceEntry, app_services
from lumi.packaging.repository import Repository
from lumi.packaging.source import SourceInfo, source_info, stage
from lumi.packaging.store.layout import LayoutStore
from lumi.packaging.wheel import (
    LOCK_FILE,
    Wheel,
    build_wheel,
    check_lock,
    lock_from_environment,
)

BUILD_DIR = Path(".lumi") / "build"
LAST_BUILD = "last-build.json"
CLIENT_TARGETS = {"python-client": "python", "typescript-client": "typescript"}


@dataclasses.dataclass(frozen=True)
class BuildResult:
    artifacts: list[Artifact]
    wheel: str
    lock: Path
    lock_written: bool
    out: Path
    seconds: float


async def build_app(
    app_dir: Path,
    services: list[str] | None = None,
    *,
    env: str | None = None,
    out: Path | None = None,
    isolated: bool = False,
    step: Callable[[str], None] = lambda message: None,
) -> BuildResult:
    """Build the artifacts of ``services`` (default: all) of the app at ``app_dir``; the slow
    parts (a child process, the wheel build) run off the event loop."""
    started = time.perf_counter()
    result = await asyncio.to_thread(_build, app_dir, services or [], env, out, isolated, step)
    step("writing artifacts")
    await write_build(result.out, result.artifacts)
    return dataclasses.replace(result, seconds=time.perf_counter() - started)


def _build(
    app_dir: Path,
    services: list[str],
    env: str | None,
    out: Path | None,
    isolated: bool,
    step: Callable[[str], None],
) -> BuildResult:
    app_dir = app_dir.resolve()
    config = load_config(app_dir, env)
    step("reading the app's services")
    entries = app_services(app_dir, env)
    chosen = select_services(entries, services)
    for name in chosen:
        try:
            parse(entries[name].interface.version)
        except VersionError as exc:
            raise VersionError(f'{name}: {exc} (set version = "1.0.0" on the class)') from None
    info = source_info(app_dir)
    step("building the wheel")
    wheel = _wheel(app_dir, info.epoch, isolated)
    lock_path = config.path.parent / LOCK_FILE
    written = not lock_path.exists()
    if written:
        lock_path.write_text(lock_from_environment(wheel.requires, wheel.name))
    else:
        check_lock(lock_path, wheel.requires, wheel.name)
    lock = lock_path.read_bytes()
    artifacts = []
    for name in chosen:
        step(f"packing {name}")
        artifacts.append(_artifact(config, entries, name, wheel, lock, info))
    target = (out or app_dir / BUILD_DIR).resolve()
    return BuildResult(artifacts, wheel.name, lock_path, written, target, 0.0)


def write_lock(app_dir: Path, *, isolated: bool = False) -> tuple[Path, int]:
    """Write ``requirements.lock`` afresh from the installed versions of the wheel's
    dependencies; returns the file and the number of pins."""
    wheel = _wheel(app_dir, 0, isolated)
    text = lock_from_environment(wheel.requires, wheel.name)
    path = app_dir / LOCK_FILE
    path.write_text(text)
    return path, sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def select_services(entries: dict[str, ServiceEntry], names: list[str]) -> list[str]:
    """``names`` checked against the app (all services when empty), with a did-you-mean."""
    for name in names:
        if name not in entries:
            match = close_matches(name, list(entries), n=1)
            hint = f"; did you mean {match[0]!r}?" if match else ""
            raise BuildError(
                f"no service {name!r} in this app{hint} (services: {', '.join(entries)})"
            )
    return names or list(entries)


def requirements_of(
    config: AppConfig, entries: dict[str, ServiceEntry], name: str
) -> dict[str, str]:
    """The ranges ``name`` requires: its config's ``requires``, and for each capability of the
    same app not listed there, ``^`` its current version."""
    ranges = dict(config.service(name).requires)
    for capability in entries[name].interface.requires:
        if capability not in ranges:
            own = entries.get(capability)
            ranges[capability] = f"^{own.interface.version}" if own else "*"
    return dict(sorted(ranges.items()))


def _artifact(
    config: AppConfig,
    entries: dict[str, ServiceEntry],
    name: str,
    wheel: Wheel,
    lock: bytes,
    info: SourceInfo,
) -> Artifact:
    iface = entries[name].interface
    binding = config.binding(name)
    own = config.service(name)
    manifest = ArtifactManifest(
        app=config.name,
        service=name,
        version=iface.version,
        entry=entries[name].entry,
        interface=iface.to_dict(),
        fingerprint=iface.fingerprint,
        requires=requirements_of(config, entries, name),
        bindings=Bindings(
            rpc=list(binding.rpc or ["http"]),
            events=binding.events or "embedded",
            runtime=binding.runtime or "process",
            replicas=own.replicas,
            placement=own.placement,
        ),
        wheel=wheel.name,
        requires_python=wheel.requires_python,
        provenance=Provenance(
            commit=info.commit,
            dirty=info.dirty,
            builder=f"lumi {lumi.__version__}",
            build_backend=wheel.backend,
            created=info.created,
            source_date_epoch=info.epoch,
        ),
    )
    clients: dict[str, bytes] = {}
    request = GenerateRequest([iface], package=config.name.replace("-", "_"))
    for target, folder in CLIENT_TARGETS.items():
        for path, text in get_generator(target).generate(request).items():
            clients[f"{folder}/{path}"] = text.encode()
    files = [
        (oci.WHEEL_MEDIA_TYPE, wheel.name, wheel.data),
        (oci.LOCK_MEDIA_TYPE, LOCK_FILE, lock),
        (oci.CLIENTS_MEDIA_TYPE, "clients.tar.gz", oci.reproducible_targz(clients, info.epoch)),
    ]
    return Artifact.create(manifest, files)


def _wheel(app_dir: Path, epoch: int, isolated: bool) -> Wheel:
    with tempfile.TemporaryDirectory(prefix="lumi-build-") as tmp:
        stage(app_dir, Path(tmp) / "src", epoch)
        return build_wheel(Path(tmp) / "src", Path(tmp) / "dist", epoch=epoch, isolated=isolated)


async def write_build(target: Path, artifacts: list[Artifact]) -> None:
    """Put ``artifacts`` into the build layout (a rebuild of a version replaces its tag) and
    record them as the last build."""
    store = LayoutStore(target)
    _ignore_lumi_folder(target)
    for artifact in artifacts:
        repo = repository_name(artifact.manifest.service)
        blobs = {artifact.config.digest: artifact.config_bytes}
        blobs.update({layer.descriptor.digest: layer.data for layer in artifact.layers})
        for digest, data in blobs.items():
            await store.put_blob(repo, digest, data)
        tag = tag_of(artifact.manifest.version)
        await store.put_manifest(repo, tag, artifact.manifest_bytes, oci.MANIFEST_MEDIA_TYPE)
    record = [{"service": a.manifest.service, "version": a.manifest.version, "digest": a.digest}
              for a in artifacts]  # fmt: skip
    (target / LAST_BUILD).write_text(json.dumps({"artifacts": record}, indent=2) + "\n")


def _ignore_lumi_folder(target: Path) -> None:
    """Keep git from listing Lumi's working folder as untracked (as a venv does)."""
    for parent in (target, *target.parents):
        if parent.name == ".lumi":
            parent.mkdir(parents=True, exist_ok=True)
            ignore = parent / ".gitignore"
            if not ignore.exists():
                ignore.write_text("# Lumi's working files (builds, traces, installed clients)\n*\n")
            return


async def load_built(out: Path) -> list[Artifact]:
    """The artifacts of the last build in the build layout ``out``, digest-checked."""
    record = out / LAST_BUILD
    if not record.is_file():
        raise BuildError(f"nothing built in {out}; run lumi build first")
    entries = json.loads(record.read_text())["artifacts"]
    repo = Repository(LayoutStore(out))
    return [await repo.pull(e["service"], e["digest"]) for e in entries]
