"""``lumi build image [SERVICE...]``: one container image per service.

One Containerfile (written to ``.lumi/image-build/Containerfile``) with a stage per service:

* ``build`` — a virtualenv with the app's locked dependencies, installed offline from wheels
  fetched for the base image's interpreter, and the Lumi that builds the image;
* ``runtime`` — the base image, a non-root user (uid 10001), the venv and the app, a
  HEALTHCHECK probing the replica's own endpoints; ``STOPSIGNAL SIGTERM``, which ``lumi serve``
  handles by draining;
* ``svc-<service>`` — ``ENTRYPOINT ["lumi", "serve", "<Service>"]``.

The stages share every layer but the last, so N services cost one build. Podman, buildah or
docker builds it (whichever works here); references are recorded in ``.lumi/images.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import lumi
from lumi.config import AppConfig, load_config
from lumi.model.interface import interface
from lumi.model.suggest import close_matches
from lumi.paths import AppPaths
from lumi.runtimes.engine import Engine, ImageRecord, find_engine, record_images
from lumi.targets.dependencies import (
    LOCK_FILE,
    BuildError,
    PythonTarget,
    Step,
    pins_for,
    wheelhouse,
)

USER_ID = 10001
COPY_IGNORE = shutil.ignore_patterns(
    ".lumi", "__pycache__", "*.pyc", ".git", ".venv", "venv", ".mypy_cache", ".pytest_cache",
    ".ruff_cache", "node_modules", "dist", "build",
)  # fmt: skip
_PROBE = (
    "import json, platform, sys; "
    "print(json.dumps({'version': '%d.%d' % sys.version_info[:2], "
    "'machine': platform.machine(), 'glibc': platform.libc_ver()[1]}))"
)


@dataclasses.dataclass(frozen=True)
class BuiltImage:
    """One image ``lumi build image`` built."""

    service: str
    ref: str
    id: str


def wheel_cache() -> Path:
    """Where downloaded wheels are kept between builds (``LUMI_WHEEL_CACHE`` to move it)."""
    if os.environ.get("LUMI_WHEEL_CACHE"):
        return Path(os.environ["LUMI_WHEEL_CACHE"])
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "lumi" / "wheels"


def image_ref(config: AppConfig, service: str, version: str) -> str:
    """``<registry>/<app>-<service>:<version>``, lower-cased to a valid reference."""
    name = re.sub(r"[^a-z0-9.-]+", "-", f"{config.name}-{service}".lower()).strip("-.")
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "-", version)[:128]
    return f"{config.image.registry.rstrip('/')}/{name}:{tag}"


def stage_of(service: str) -> str:
    return f"svc-{service.lower()}"


def render_containerfile(app: str, services: Sequence[str], base: str) -> str:
    """The Containerfile with one final stage per service."""
    head = f"""\
# Written by `lumi build image` for the app {app!r}; rewritten on every build.
FROM {base} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/lumi
COPY {LOCK_FILE} /opt/lumi/{LOCK_FILE}
COPY wheels/ /tmp/wheels/
RUN /opt/lumi/bin/pip install --no-index --no-deps --find-links /tmp/wheels \\
        --requirement /opt/lumi/{LOCK_FILE}
COPY lumi/ /opt/lumi/src/lumi/
RUN /opt/lumi/bin/python -c "import sysconfig, pathlib; \\
pathlib.Path(sysconfig.get_path('purelib'), 'lumi.pth').write_text('/opt/lumi/src\\n')" \\
 && printf '#!/opt/lumi/bin/python\\nfrom lumi.cli.main import main\\nmain()\\n' \\
        > /opt/lumi/bin/lumi \\
 && chmod 755 /opt/lumi/bin/lumi \\
 && /opt/lumi/bin/python -m compileall -q /opt/lumi/src \\
 && /opt/lumi/bin/python -c "import lumi.runtimes.serve"

FROM {base} AS runtime
RUN useradd --system --uid {USER_ID} --user-group --home-dir /app --no-create-home \\
        --shell /usr/sbin/nologin lumi
COPY --from=build /opt/lumi /opt/lumi
COPY app/ /app/
RUN /opt/lumi/bin/python -m compileall -q /app \\
 && mkdir -p /app/.lumi && chown {USER_ID}:{USER_ID} /app/.lumi && chmod 700 /app/.lumi
ENV PATH=/opt/lumi/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \\
    LUMI_ENDPOINTS_FILE=/tmp/lumi-endpoints.json
WORKDIR /app
USER {USER_ID}:{USER_ID}
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \\
    CMD ["python", "-m", "lumi.runtimes.healthcheck"]
LABEL io.lumi.app={json.dumps(app)}
"""
    stages = [
        f"""
FROM runtime AS {stage_of(service)}
LABEL io.lumi.service={json.dumps(service)}
ENTRYPOINT ["lumi", "serve", {json.dumps(service)}]
"""
        for service in services
    ]
    return head + "".join(stages)


def probe_python(engine: Engine, base: str) -> PythonTarget:
    """The Python version, machine and glibc of the base image."""
    if engine.name == "buildah":
        made = _run(engine.command("from", "--pull-never", base), f"start {base}")
        container = made.strip().splitlines()[-1]
        try:
            output = _run(engine.command("run", container, "python3", "-c", _PROBE), base)
        finally:
            subprocess.run(engine.command("rm", container), capture_output=True, check=False)
    else:
        output = _run(
            engine.command("run", "--rm", "--network=none", base, "python3", "-c", _PROBE),
            f"run python3 in {base}",
        )
    try:
        info = json.loads(output.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise BuildError(f"{base}: could not read its Python version ({output[-200:]!r})") from None
    if not info.get("glibc"):
        raise BuildError(f"{base} has no glibc (alpine?): use a Debian- or Ubuntu-based image")
    return PythonTarget(version=info["version"], machine=info["machine"], glibc=info["glibc"])


def _run(command: list[str], what: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise BuildError(f"could not {what}: {lines[-1] if lines else f'exit {done.returncode}'}")
    return done.stdout


def prepare_context(
    config: AppConfig, context: Path, wheels: list[Path], pins: dict[str, str]
) -> None:
    """The build context: the app, the Lumi building it, the wheels and the lock."""
    if context.exists():
        shutil.rmtree(context)
    context.mkdir(parents=True)
    shutil.copytree(config.root, context / "app", ignore=COPY_IGNORE)
    shutil.copytree(Path(lumi.__file__).parent, context / "lumi", ignore=COPY_IGNORE)
    (context / "wheels").mkdir()
    for wheel in wheels:
        copy = context / "wheels" / wheel.name
        try:
            os.link(wheel, copy)  # the cache is usually on the same disk
        except OSError:
            shutil.copy2(wheel, copy)
    lock = "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))
    (context / LOCK_FILE).write_text(f"# Pinned by lumi build image for {config.name}.\n{lock}")


def build_images(
    app_dir: str | Path,
    services: Sequence[str] = (),
    *,
    env: str | None = None,
    base: str | None = None,
    step: Step = lambda message: None,
) -> list[BuiltImage]:
    """Build an image per service (all when ``services`` is empty); records them."""
    config = load_config(app_dir, env)
    classes = {cls.name: cls for cls in config.load_services()}
    chosen = choose_services(list(services), list(classes))
    engine = find_engine("build")
    base_image = base or config.image.base
    step(f"reading the interpreter of {base_image}")
    target = probe_python(engine, base_image)
    pins = pins_for(config)
    wheels = wheelhouse(pins, target, wheel_cache(), step)
    context = AppPaths(config.root).state / "image-build"
    prepare_context(config, context, wheels, pins)
    containerfile = context / "Containerfile"
    containerfile.write_text(render_containerfile(config.name, chosen, base_image))
    built: list[BuiltImage] = []
    for service in chosen:
        ref = image_ref(config, service, interface(classes[service]).version)
        step(f"building {ref} with {engine.name}")
        iidfile = context / f".{service}.iid"
        started = time.monotonic()
        done = subprocess.run(
            engine.build_command(containerfile, context, ref, stage_of(service), iidfile),
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
            raise BuildError(f"{engine.name} could not build {ref}:\n{tail}")
        step(f"built {ref} in {time.monotonic() - started:.1f}s")
        built.append(BuiltImage(service, ref, iidfile.read_text().strip()))
    record_images(
        config.root,
        {
            b.service: ImageRecord(ref=b.ref, id=b.id, engine=engine.name, base=base_image)
            for b in built
        },
    )
    return built


def choose_services(asked: list[str], known: list[str]) -> list[str]:
    for name in asked:
        if name not in known:
            match = close_matches(name, known, n=1)
            hint = f"; did you mean {match[0]!r}?" if match else ""
            raise BuildError(
                f"no service {name!r} in this app{hint} (services: {', '.join(known)})"
            )
    return list(dict.fromkeys(asked)) or known
