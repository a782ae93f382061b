"""Stable numbers for fields and enum values across regenerations (protobuf, Thrift).

A lock section maps a message (or struct, or enum) to ``{"fields": {name: n}, "reserved":
{name: n}}``. A new name gets the next free number; a removed name moves to ``reserved`` and its
number is never used again — the rule that keeps old and new binaries wire-compatible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from lumi.codegen.base import LOCK_FILE, GenerateRequest, dump_json
from lumi.codegen.schema import snake
from lumi.model.interface import ServiceInterface

_PROTO_RESERVED_RANGE = range(19000, 20000)  # protobuf's own implementation range


class Numbering:
    """The numbers of one lock section; :meth:`section` is the updated lock data."""

    def __init__(self, data: dict[str, Any] | None = None, *, first: int = 1) -> None:
        self._data: dict[str, dict[str, dict[str, int]]] = {
            key: {
                "fields": dict(value.get("fields", {})),
                "reserved": dict(value.get("reserved", {})),
            }
            for key, value in (data or {}).items()
        }
        self._first = first
        self._used: set[str] = set()

    def assign(self, owner: str, names: Sequence[str]) -> dict[str, int]:
        """Numbers for ``names`` in ``owner``; names that disappeared become reserved."""
        self._used.add(owner)
        entry = self._data.setdefault(owner, {"fields": {}, "reserved": {}})
        fields, reserved = entry["fields"], entry["reserved"]
        for name in list(fields):
            if name not in names:
                reserved[name] = fields.pop(name)
        taken = set(fields.values()) | set(reserved.values())
        candidate = max(taken, default=self._first - 1) + 1
        for name in names:
            if name in fields:
                continue
            while candidate in taken or candidate in _PROTO_RESERVED_RANGE:
                candidate += 1
            fields[name] = candidate
            taken.add(candidate)
        return {name: fields[name] for name in names}

    def reserved(self, owner: str) -> dict[str, int]:
        return dict(sorted(self._data.get(owner, {}).get("reserved", {}).items()))

    def section(self) -> dict[str, Any]:
        """The lock data: every owner seen now, plus owners that vanished (kept, so a type that
        comes back does not reuse old numbers)."""
        return {
            owner: {
                "fields": dict(sorted(entry["fields"].items(), key=lambda kv: kv[1])),
                "reserved": dict(sorted(entry["reserved"].items(), key=lambda kv: kv[1])),
            }
            for owner, entry in sorted(self._data.items())
        }


def numbered_files(
    request: GenerateRequest,
    section: str,
    extension: str,
    render: Callable[[ServiceInterface, Numbering], str],
) -> dict[str, str]:
    """One ``<service>.<extension>`` file per interface, numbered from the lock's ``section``,
    plus the updated lock file."""
    numbering = Numbering(request.lock.get(section))
    files = {
        f"{snake(iface.name)}.{extension}": render(iface, numbering)
        for iface in sorted(request.interfaces, key=lambda i: i.name)
    }
    files[LOCK_FILE] = dump_json({**request.lock, section: numbering.section()})
    return files
