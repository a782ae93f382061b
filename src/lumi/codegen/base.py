"""The generator contract: interfaces in, files out.

A generator reads only :class:`~lumi.interface.ServiceInterface` values — never a Python class —
and returns a mapping of relative paths to file contents. It does no I/O: the CLI (``lumi gen``)
writes the files, and ``lumi gen --check`` compares them with what is on disk. Output must be
byte-identical on every run and machine, so generators sort everything they iterate.

A generator that numbers things (protobuf fields, Thrift field ids) keeps the numbers stable
across regenerations through a lock: the previous lock comes in as ``GenerateRequest.lock`` and
the updated one goes out as the file :data:`LOCK_FILE`, committed beside the output.
"""

from __future__ import annotations

import abc
import dataclasses
import difflib
import importlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from lumi.interface import ServiceInterface

LOCK_FILE = "lumi.lock.json"


@dataclasses.dataclass(frozen=True)
class GenerateRequest:
    """What a generator is asked to project."""

    interfaces: Sequence[ServiceInterface]
    lock: dict[str, Any] = dataclasses.field(default_factory=dict)
    package: str = "lumi"
    # service name → its ``events`` config value, for generators that describe the broker
    events: Mapping[str, str] = dataclasses.field(default_factory=dict)


class Generator(abc.ABC):
    """Projects interfaces into one target's files."""

    name: ClassVar[str]
    description: ClassVar[str]
    uses_lock: ClassVar[bool] = False

    @abc.abstractmethod
    def generate(self, request: GenerateRequest) -> dict[str, str]:
        """Relative path → file contents (text, ``\\n`` line ends, ending with a newline)."""


_TARGETS = {
    "proto": "lumi.codegen.proto:ProtoGenerator",
    "thrift": "lumi.codegen.thrift:ThriftGenerator",
    "openapi": "lumi.codegen.openapi:OpenApiGenerator",
    "asyncapi": "lumi.codegen.asyncapi:AsyncApiGenerator",
    "jsonschema": "lumi.codegen.jsonschema:JsonSchemaGenerator",
    "python-client": "lumi.codegen.pyclient:PythonClientGenerator",
    "typescript-client": "lumi.codegen.tsclient:TypeScriptClientGenerator",
}


def targets() -> list[str]:
    return sorted(_TARGETS)


def get_generator(name: str) -> Generator:
    """The generator called ``name``; a ValueError with a suggestion for an unknown one."""
    ref = _TARGETS.get(name)
    if ref is None:
        match = difflib.get_close_matches(name, list(_TARGETS), n=1)
        hint = f"; did you mean {match[0]!r}?" if match else ""
        raise ValueError(f"unknown target {name!r}{hint} (targets: {', '.join(targets())})")
    module, _, cls = ref.partition(":")
    generator: Generator = getattr(importlib.import_module(module), cls)()
    return generator


def doc_lines(text: str) -> list[str]:
    """A docstring as comment lines every target's lexer accepts.

    Docstrings are free text: control characters (a NUL ends a ``.proto`` comment early) become
    spaces, and every line break Python knows (``\\r``, ``\\x0c``, U+2028, ...) splits a line.
    """
    lines = [_CONTROL.sub(" ", line).rstrip() for line in text.strip().splitlines()]
    return lines if any(lines) else []


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def dump_json(data: Any) -> str:
    """Deterministic, readable JSON for generated files."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
