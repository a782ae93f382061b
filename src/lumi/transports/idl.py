"""What the IDL-typed transports (gRPC, Thrift) share with ``lumi gen``: package and lock.

A gRPC method's path and a Thrift service's messages are those of the generated files, so the
servers and channels of an app must use the package prefix ``lumi gen`` used (the app's name)
and the field numbers of its lock. A runtime sets them once per process with :func:`configure`
(``lumi run``'s replicas and ``lumi call`` do); without it they are ``lumi gen``'s defaults for
interfaces given as JSON (package ``lumi``, no lock).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lumi.model.errors import ConfigError

LOCK_FILE = "lumi.lock.json"


@dataclasses.dataclass(frozen=True)
class IdlOptions:
    """The package prefix and lock sections (``proto``, ``thrift``) of an app's generated files."""

    package: str = "lumi"
    locks: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)

    def lock(self, section: str) -> Mapping[str, Any] | None:
        return self.locks.get(section)


_current = IdlOptions()


def configure(options: IdlOptions) -> None:
    """Make ``options`` this process's (call before building servers or channels)."""
    global _current
    _current = options


def current() -> IdlOptions:
    return _current


def for_app(root: Path, name: str) -> IdlOptions:
    """The options of the app in ``root`` named ``name``: package ``name`` (as ``lumi gen``
    defaults to), and the ``proto``/``thrift`` lock sections from ``gen/proto/``,
    ``gen/thrift/``, ``gen/`` or the app folder — the first ``lumi.lock.json`` that has each."""
    locks: dict[str, Mapping[str, Any]] = {}
    for section in ("proto", "thrift"):
        for folder in (root / "gen" / section, root / "gen", root):
            file = folder / LOCK_FILE
            if not file.is_file():
                continue
            try:
                data = json.loads(file.read_text())
            except ValueError as exc:
                raise ConfigError(f"{file}: not JSON: {exc}") from None
            if isinstance(data, dict) and section in data:
                locks[section] = data[section]
                break
    return IdlOptions(name.replace("-", "_"), locks)
