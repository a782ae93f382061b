"""The generator contract: interfaces in, files out.

A generator reads only :class:`~lumi.model.interface.ServiceInterface` values — never a
Python class — and returns a mapping of relative paths to file contents. It does no I/O: the
CLI (``lumi gen``) writes the files, and ``lumi gen --check`` compares them with what is on
disk. Output must be
byte-identical on every run and machine, so generators sort everything they iterate.

A generator that numbers things (protobuf fields, Thrift field ids) keeps the numbers stable
across regenerations through a lock: the previous lock comes in as ``GenerateRequest.lock`` and
the updated one goes out as the file :data:`LOCK_FILE`, committed beside the output.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from lumi.model.interface import ServiceInterface

LOCK_FILE = "lumi.lock.json"


class BrokerView:
    """The AsyncAPI view of one broker URL: what the AsyncAPI generator asks of the broker a
    service's events travel on. Each network broker subclasses it (:mod:`lumi.brokers.asyncapi`);
    callers of the generators build the views, so generators never import a broker."""

    protocol = ""
    url = ""  # the events URL it describes (services sharing one broker share one server)
    binary = False  # messages in CloudEvents binary mode: data as payload, attributes as headers

    def __init__(self, hosts: list[str], options: dict[str, str]) -> None:
        self.hosts = hosts
        self.options = options

    def server(self) -> dict[str, Any]:
        server: dict[str, Any] = {"host": self.hosts[0], "protocol": self.protocol}
        if len(self.hosts) > 1:
            server["description"] = "Also: " + ", ".join(self.hosts[1:])
        return server

    def address(self, topic: str) -> str:
        return topic

    def channel_bindings(self, topic: str) -> dict[str, Any]:
        return {}

    def receive_bindings(self, topic: str, group: str) -> dict[str, Any]:
        return {}

    def message_bindings(self) -> dict[str, Any]:
        return {}


@dataclasses.dataclass(frozen=True)
class GenerateRequest:
    """What a generator is asked to project."""

    interfaces: Sequence[ServiceInterface]
    lock: dict[str, Any] = dataclasses.field(default_factory=dict)
    package: str = "lumi"
    # service name → the broker its events travel on, for generators that describe it (only
    # network brokers: Lumi's own embedded and memory brokers speak no public protocol)
    brokers: Mapping[str, BrokerView] = dataclasses.field(default_factory=dict)


class Generator(abc.ABC):
    """Projects interfaces into one target's files."""

    name: ClassVar[str]
    description: ClassVar[str]
    uses_lock: ClassVar[bool] = False

    @abc.abstractmethod
    def generate(self, request: GenerateRequest) -> dict[str, str]:
        """Relative path → file contents (text, ``\\n`` line ends, ending with a newline)."""


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
