"""``lumi build lambda SERVICE``: a deployable AWS Lambda zip for one service.

The zip holds ``lumi_lambda.py`` (the handler, ``lumi_lambda.handler``), the app under
``app/``, the Lumi that builds it, and the app's locked dependencies installed for the Lambda
runtime's interpreter (its Python version, machine and glibc). Entries are sorted and dated
1980-01-01, so the same inputs give the same bytes. What the handler answers is
:mod:`lumi.runtimes.aws_lambda`.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import lumi
from lumi.config import load_config
from lumi.paths import AppPaths
from lumi.targets.dependencies import BuildError, PythonTarget, Step, pins_for, wheelhouse
from lumi.targets.image import COPY_IGNORE, choose_services, wheel_cache

HANDLER = "lumi_lambda.handler"
# The glibc of each Lambda Python runtime's Amazon Linux.
LAMBDA_GLIBC = {"3.9": "2.26", "3.10": "2.26", "3.11": "2.26", "3.12": "2.34", "3.13": "2.34"}
MACHINES = {"x86_64": "x86_64", "arm64": "aarch64"}
# Provided by every Lambda Python runtime, and not needed by the handler.
_PROVIDED = {"awslambdaric", "boto3", "botocore", "s3transfer"}
_EPOCH = (1980, 1, 1, 0, 0, 0)

HANDLER_SOURCE = '''\
"""The AWS Lambda handler of {service}, written by lumi build lambda."""

from pathlib import Path

from lumi.runtimes.aws_lambda import LambdaService

service = LambdaService({service!r}, Path(__file__).parent / "app")
handler = service.handler
'''


@dataclasses.dataclass(frozen=True)
class LambdaZip:
    """A zip ``lumi build lambda`` wrote."""

    path: Path
    size: int
    handler: str = HANDLER


def lambda_target(python: str, arch: str) -> PythonTarget:
    """The interpreter of the Lambda runtime ``python<python>`` on ``arch``."""
    if python not in LAMBDA_GLIBC:
        raise BuildError(f"no Lambda runtime python{python} (choose: {', '.join(LAMBDA_GLIBC)})")
    if arch not in MACHINES:
        raise BuildError(f"no Lambda architecture {arch!r} (choose: {', '.join(MACHINES)})")
    return PythonTarget(version=python, machine=MACHINES[arch], glibc=LAMBDA_GLIBC[python])


def build_lambda(
    app_dir: str | Path,
    service: str,
    *,
    env: str | None = None,
    out: Path | None = None,
    python: str = "3.12",
    arch: str = "x86_64",
    step: Step = lambda message: None,
) -> LambdaZip:
    """Write the zip serving ``service``; returns where and how big."""
    config = load_config(app_dir, env)
    names = [cls.name for cls in config.load_services()]
    choose_services([service], names)
    target = lambda_target(python, arch)
    pins = {n: v for n, v in pins_for(config).items() if n not in _PROVIDED}
    wheels = wheelhouse(pins, target, wheel_cache(), step)
    zip_path = out or AppPaths(config.root).state / "lambda" / f"{service}.zip"
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lumi-lambda-") as tmp:
        root = Path(tmp) / "root"
        step(f"installing {len(wheels)} wheel(s) for python{python} on {arch}")
        _install(wheels, root, target)
        shutil.copytree(Path(lumi.__file__).parent, root / "lumi", ignore=COPY_IGNORE)
        shutil.copytree(config.root, root / "app", ignore=COPY_IGNORE)
        (root / "lumi_lambda.py").write_text(HANDLER_SOURCE.format(service=service))
        partial = zip_path.with_suffix(".zip.tmp")
        _write_zip(root, partial)
        os.replace(partial, zip_path)
    return LambdaZip(zip_path, zip_path.stat().st_size)


def _install(wheels: list[Path], root: Path, target: PythonTarget) -> None:
    """Unpack the wheels into ``root`` as pip would into site-packages (no scripts)."""
    if not wheels:
        root.mkdir(parents=True)
        return
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--no-deps", "--no-index", "--no-compile", "--target", str(root),
        *target.pip_arguments(), *(str(w) for w in wheels),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        detail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BuildError(f"pip could not unpack the wheels: {detail}")
    shutil.rmtree(root / "bin", ignore_errors=True)  # console scripts: no use in Lambda


def _write_zip(root: Path, path: Path) -> None:
    files = sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for file in files:
            info = zipfile.ZipInfo(file.relative_to(root).as_posix(), date_time=_EPOCH)
            executable = os.access(file, os.X_OK) and file.suffix in ("", ".so")
            info.external_attr = (0o755 if executable else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, file.read_bytes())
