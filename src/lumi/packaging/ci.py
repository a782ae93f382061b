"""``lumi ci``: the release pipeline, run the same way on a laptop and in CI.

Stages, in order; the first that fails stops the run with its reason:

==========  ==================================================================================
``gen``     every generated folder under ``gen/<target>`` is up to date (``lumi gen --check``)
``api``     each service's interface against its last release (``lumi api diff``'s engine):
            a break its version does not announce, or a published version whose interface
            changed, fails
``test``    ``python -m pytest`` in the app folder (skipped without ``tests/``)
``build``   ``lumi build``
``publish`` ``lumi publish`` (skipped with ``publish=False``)
==========  ==================================================================================

A stage reports through ``on_event(name, state, detail)`` with state ``running``, ``ok``,
``skipped`` or ``failed``, so the CLI can draw live progress.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from lumi.codegen import get_generator, targets
from lumi.codegen.base import LOCK_FILE as GEN_LOCK
from lumi.codegen.base import GenerateRequest
from lumi.config import AppConfig
from lumi.model.errors import AppError, ConfigError
from lumi.packaging.build import BUILD_DIR, build_app, load_built
from lumi.packaging.introspect import app_services
from lumi.packaging.publish import publish as publish_artifacts
from lumi.packaging.repository import Repository
from lumi.packaging.versioning import check_release, refusal

STAGES = ("gen", "api", "test", "build", "publish")
Event = Callable[[str, str, str], None]


class StageFailed(AppError):
    """A stage failed; the message says which and why."""


class Skipped(Exception):
    """Raised by a stage that has nothing to do; the message says why."""


@dataclasses.dataclass(frozen=True)
class StageResult:
    name: str
    state: str  # ok | skipped | failed
    detail: str
    seconds: float


@dataclasses.dataclass
class Pipeline:
    """The stages for one app and repository."""

    config: AppConfig
    repository: Repository
    gen_dir: Path = Path("gen")
    test_command: tuple[str, ...] = (sys.executable, "-m", "pytest", "-q")

    @property
    def root(self) -> Path:
        return self.config.root

    async def gen(self) -> str:
        folder = self.root / self.gen_dir
        present = [t for t in targets() if (folder / t).is_dir()]
        if not present:
            raise Skipped(f"no generated folders under {self.gen_dir}/")
        interfaces = await asyncio.to_thread(app_services, self.root)
        chosen = [entry.interface for _, entry in sorted(interfaces.items())]
        stale = []
        count = 0
        for target in present:
            base = folder / target
            lock_file = base / GEN_LOCK
            lock = json.loads(lock_file.read_text()) if lock_file.exists() else {}
            request = GenerateRequest(chosen, lock=lock, package=self.config.name.replace("-", "_"))
            for path, text in get_generator(target).generate(request).items():
                count += 1
                file = base / path
                if not file.is_file() or file.read_text() != text:
                    stale.append(str(file.relative_to(self.root)))
        if stale:
            raise StageFailed(
                f"{len(stale)} generated file(s) out of date, first {stale[0]}; run: "
                f"lumi gen all --out {self.gen_dir}"
            )
        return f"{count} generated file(s) up to date in {', '.join(present)}"

    async def api(self) -> str:
        entries = await asyncio.to_thread(app_services, self.root)
        notes = []
        for name, entry in entries.items():
            iface = entry.interface
            published = await self.repository.published_digest(name, iface.version)
            if published is not None:
                live = await self.repository.manifest(name, iface.version)
                if live.manifest.fingerprint != iface.fingerprint:
                    raise StageFailed(
                        f"{name} {iface.version} is published with another interface; bump "
                        f"the version: lumi version {name} patch (or minor/major)"
                    )
                continue
            check = await check_release(self.repository, iface, self.root)
            if check.errors:
                raise StageFailed(str(refusal(check)))
            if check.previous:
                notes.append(f"{name} {check.previous}→{iface.version}")
        return ", ".join(notes) or "no interface changes to release"

    async def test(self) -> str:
        if not (self.root / "tests").is_dir():
            raise Skipped("no tests/ folder")
        out = await asyncio.to_thread(
            subprocess.run, list(self.test_command), cwd=self.root, capture_output=True,
            text=True, timeout=3600,
        )  # fmt: skip
        # The summary is the last line of the runner's stdout (pytest's "N passed in …");
        # stderr only when stdout is empty: a warning printed there would hide it.
        lines = (out.stdout.strip() or out.stderr.strip()).splitlines() or ["(no output)"]
        if out.returncode != 0:
            raise StageFailed(f"tests failed: {lines[-1].strip('= ')}")
        return lines[-1].strip("= ")

    async def build(self) -> str:
        result = await build_app(self.root)
        return f"{len(result.artifacts)} artifact(s) in {result.seconds:.1f}s"

    async def publish(self) -> str:
        artifacts = await load_built(self.root / BUILD_DIR)
        results = await publish_artifacts(self.repository, artifacts, app_dir=self.root)
        fresh = [r.ref for r in results if r.created]
        return f"published {', '.join(fresh)}" if fresh else "nothing new to publish"

    async def run(
        self, *, only: list[str] | None = None, publish: bool = True, on_event: Event | None = None
    ) -> list[StageResult]:
        """Run the stages (``only`` these, if given); raise :class:`StageFailed` at the first
        failure after reporting it."""
        report = on_event or (lambda name, state, detail: None)
        chosen = [s for s in STAGES if (only is None or s in only)]
        if not publish and only is None:
            chosen.remove("publish")
        stages: dict[str, Callable[[], Awaitable[str]]] = {
            "gen": self.gen, "api": self.api, "test": self.test, "build": self.build,
            "publish": self.publish,
        }  # fmt: skip
        results = []
        for name in chosen:
            report(name, "running", "")
            started = time.perf_counter()
            try:
                detail = await stages[name]()
                state = "ok"
            except Skipped as exc:
                detail, state = str(exc), "skipped"
            except (StageFailed, AppError, ConfigError) as exc:
                seconds = time.perf_counter() - started
                results.append(StageResult(name, "failed", str(exc), seconds))
                report(name, "failed", str(exc))
                raise StageFailed(f"{name} failed: {exc}") from None
            results.append(StageResult(name, state, detail, time.perf_counter() - started))
            report(name, state, detail)
        return results
