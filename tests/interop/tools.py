"""Running the tools Lumi did not write against generated files (missing tools fail loudly)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from lumi.codegen import get_generator
from lumi.codegen.base import GenerateRequest
from lumi.model.interface import ServiceInterface

NODE_DIR = Path(__file__).resolve().parent / "node"
TSC = NODE_DIR / "node_modules" / ".bin" / "tsc"


def require(tool: str | Path, install: str) -> str:
    path = shutil.which(str(tool)) if not Path(tool).is_absolute() else str(tool)
    if not path or not Path(path).exists():
        raise AssertionError(f"{tool} is missing: {install} (scripts/test-deps installs it)")
    return path


def run(cmd: Sequence[str | Path], cwd: Path | None = None, timeout: float = 300) -> str:
    out = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def generate(
    target: str, interfaces: Sequence[ServiceInterface], out: Path, package: str = "lumi"
) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = get_generator(target).generate(GenerateRequest(list(interfaces), package=package))
    written = []
    for name, text in files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


def protoc(out: Path) -> None:
    """Compile every .proto in ``out`` with grpcio-tools' protoc (Python, stubs, gRPC)."""
    protos = sorted(p.name for p in out.glob("*.proto"))
    run([sys.executable, "-m", "grpc_tools.protoc", "-I.", "--python_out=.", "--pyi_out=.",
         "--grpc_python_out=.", *protos], cwd=out)  # fmt: skip


def thrift(out: Path) -> None:
    """Compile every .thrift in ``out`` with the Apache Thrift compiler."""
    binary = require("thrift", "apt-get install thrift-compiler")
    (out / "py").mkdir(exist_ok=True)
    for file in sorted(out.glob("*.thrift")):
        run([binary, "-r", "--gen", "py", "-out", out / "py", file])


def asyncapi(files: Sequence[Path]) -> None:
    require(
        NODE_DIR / "node_modules" / "@asyncapi" / "parser" / "package.json",
        "npm ci in tests/interop/node",
    )
    run([require("node", "apt-get install nodejs"), NODE_DIR / "validate-asyncapi.mjs", *files])


def tsc(files: Sequence[Path], out_dir: Path | None = None) -> None:
    """Type-check (and with ``out_dir``, compile) TypeScript in strict mode."""
    require(TSC, "npm ci in tests/interop/node")
    emit = ["--outDir", out_dir] if out_dir else ["--noEmit"]
    run([TSC, "--strict", "--target", "ES2022", "--lib", "ES2022,DOM", "--module", "ES2022",
         "--moduleResolution", "bundler", *emit, *files])  # fmt: skip


def dump(data: object) -> str:
    return json.dumps(data, indent=1)
