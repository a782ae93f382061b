"""Reading an app's services without importing its code into this process.

:func:`app_services` runs ``python -m lumi.packaging.introspect APP [ENV]`` in a child process
(like ``lumi api diff``), so two versions of the same app — a build, then the same app after a
bump, or two clones — never share one interpreter's module cache.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

from lumi.model.interface import ServiceInterface
from lumi.packaging.errors import BuildError


@dataclasses.dataclass(frozen=True)
class ServiceEntry:
    """One service of an app: its ``module:Class``, the file defining it, and its interface."""

    entry: str
    file: str
    interface: ServiceInterface


def app_services(app_dir: Path, env: str | None = None) -> dict[str, ServiceEntry]:
    """Every service of the app at ``app_dir``, by name, in the config's order."""
    cmd = [sys.executable, "-m", "lumi.packaging.introspect", str(app_dir.resolve())]
    if env:
        cmd.append(env)
    out = subprocess.run(cmd, cwd=app_dir, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        lines = (out.stderr or out.stdout).strip().splitlines() or ["(no output)"]
        raise BuildError(f"{app_dir}: cannot load its services: {lines[-1]}")
    data = json.loads(out.stdout)
    return {
        name: ServiceEntry(
            item["entry"], item["file"], ServiceInterface.from_dict(item["interface"])
        )
        for name, item in data.items()
    }


def _main(argv: list[str]) -> int:
    import inspect

    from lumi.config import load_config
    from lumi.model.errors import AppError, ConfigError, DefinitionError
    from lumi.model.interface import interface

    try:
        config = load_config(argv[0], argv[1] if len(argv) > 1 else None)
        out = {
            cls.name: {
                "entry": f"{cls.__module__}:{cls.__qualname__}",
                "file": inspect.getsourcefile(cls) or "",
                "interface": interface(cls).to_dict(),
            }
            for cls in config.load_services()
        }
    except (ConfigError, AppError, DefinitionError) as exc:
        print(str(exc).splitlines()[0], file=sys.stderr)
        return 2
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
