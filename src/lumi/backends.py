"""Registries of pluggable backends: one per axis (transports, brokers, runtimes, generators).

A registry maps a name (``"grpc"``, ``"kafka"``, ``"container"``) to the class that implements
it, without importing anything until the backend is used: built-in backends are listed as
``module:attribute`` strings, third-party ones come from entry points of the axis's group
(``lumi.transports``, ``lumi.brokers``, ``lumi.runtimes``, ``lumi.generators``)::

    [project.entry-points."lumi.brokers"]
    toy = "my_package.toy_broker:ToyBroker"

Configuration validation asks the registry (:meth:`Registry.check`), so ``lumi.toml`` accepts
exactly the backends that can run here, and a backend whose client library is missing is
refused at load time with the ``pip install`` line that fixes it.

The four registries (:data:`TRANSPORTS`, :data:`BROKERS`, :data:`RUNTIMES`, :data:`GENERATORS`)
live here, below every axis, so the configuration can validate against them without importing
any backend.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from lumi.model.errors import ConfigError
from lumi.model.suggest import close_matches

if TYPE_CHECKING:
    import importlib.metadata

DISTRIBUTION = "lumi-runtime"


@dataclasses.dataclass(frozen=True)
class Backend:
    """A built-in backend: where it lives and what it needs that may not be installed."""

    name: str
    target: str  # "lumi.transports.http:HttpTransport"
    extra: str | None = None  # the pip extra that installs its client library
    requires: tuple[str, ...] = ()  # top-level modules of that library

    @property
    def module(self) -> str:
        return self.target.partition(":")[0]


class Registry:
    """The backends of one axis, by name."""

    def __init__(self, axis: str, group: str, builtins: Iterable[Backend]) -> None:
        self.axis = axis  # "RPC transport", "event broker", "runtime", "generator"
        self.group = group
        self.builtins = {backend.name: backend for backend in builtins}
        self._plugins: dict[str, importlib.metadata.EntryPoint] | None = None

    def plugins(self) -> dict[str, importlib.metadata.EntryPoint]:
        """Third-party backends registered under this axis's entry-point group."""
        if self._plugins is None:
            import importlib.metadata  # only when a name is looked up: it costs a CLI start

            found = importlib.metadata.entry_points(group=self.group)
            self._plugins = {ep.name: ep for ep in found if ep.name not in self.builtins}
        return self._plugins

    def names(self) -> list[str]:
        """Every backend that exists here: built-ins that ship with this Lumi, then plugins."""
        shipped = [n for n, b in self.builtins.items() if _exists(b.module)]
        return [*shipped, *sorted(self.plugins())]

    def check(self, name: str, *, installed: bool = True) -> None:
        """Raise ValueError (one readable sentence) unless ``name`` can be loaded here (with
        ``installed=False``: unless it names a backend at all, its library present or not)."""
        backend = self.builtins.get(name)
        if backend is None:
            if name in self.plugins():
                return
            known = [*self.builtins, *self.plugins()]
            raise ValueError(
                f"unknown {self.axis} {name!r}{_did_you_mean(name, known)} "
                f"(valid: {', '.join(self.names())})"
            )
        if not installed:
            return
        if not _exists(backend.module):
            raise ValueError(
                f"the {name} {self.axis} is not available in this version of Lumi "
                f"(available: {', '.join(self.names())})"
            )
        missing = [module for module in backend.requires if not _exists(module)]
        if missing:
            raise ValueError(
                f"the {name} {self.axis} needs {', '.join(missing)}: "
                f"pip install '{DISTRIBUTION}[{backend.extra or name}]'"
            )

    def load(self, name: str) -> Any:
        """The class implementing ``name``; ConfigError saying what to do when it cannot load."""
        try:
            self.check(name)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        backend = self.builtins.get(name)
        if backend is None:
            return self.plugins()[name].load()
        module_name, _, attr = backend.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise ConfigError(
                f"the {name} {self.axis} needs the {exc.name!r} package: "
                f"pip install '{DISTRIBUTION}[{backend.extra or name}]'"
            ) from None
        return getattr(module, attr)


def _exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _did_you_mean(word: str, choices: list[str]) -> str:
    match = close_matches(word, choices, n=1)
    return f"; did you mean {match[0]!r}?" if match else ""


# The registry line of every built-in backend: a new backend is one module plus one line here.

TRANSPORTS = Registry(
    "RPC transport",
    "lumi.transports",
    [
        Backend("http", "lumi.transports.http:HttpTransport"),
        Backend("grpc", "lumi.transports.grpc:GrpcTransport", "grpc", ("grpc", "google.protobuf")),
        Backend("thrift", "lumi.transports.thrift:ThriftTransport", "thrift", ("thriftpy2",)),
    ],
)

BROKERS = Registry(
    "event broker",
    "lumi.brokers",
    [
        Backend("embedded", "lumi.brokers.embedded:EmbeddedBroker"),
        Backend("memory", "lumi.brokers.memory:MemoryBroker"),
        Backend("kafka", "lumi.brokers.kafka:KafkaBroker", "kafka", ("confluent_kafka",)),
        Backend("nats", "lumi.brokers.nats:NatsBroker", "nats", ("nats",)),
        Backend("redis", "lumi.brokers.redis:RedisBroker", "redis", ("redis",)),
        Backend("rediss", "lumi.brokers.redis:RedisBroker", "redis", ("redis",)),  # over TLS
        Backend("sns", "lumi.brokers.sns:SnsBroker", "sns", ("aiobotocore",)),
    ],
)

RUNTIMES = Registry(
    "runtime",
    "lumi.runtimes",
    [
        Backend("process", "lumi.runtimes.process:ProcessRuntime"),
        Backend("inproc", "lumi.runtimes.inproc:InprocRuntime"),
        Backend("container", "lumi.runtimes.container:ContainerRuntime"),
        Backend("function", "lumi.runtimes.function:FunctionRuntime"),
    ],
)

GENERATORS = Registry(
    "generator",
    "lumi.generators",
    [
        Backend("proto", "lumi.codegen.proto:ProtoGenerator"),
        Backend("thrift", "lumi.codegen.thrift:ThriftGenerator"),
        Backend("openapi", "lumi.codegen.openapi:OpenApiGenerator"),
        Backend("asyncapi", "lumi.codegen.asyncapi:AsyncApiGenerator"),
        Backend("jsonschema", "lumi.codegen.jsonschema:JsonSchemaGenerator"),
        Backend("python-client", "lumi.codegen.pyclient:PythonClientGenerator"),
        Backend("typescript-client", "lumi.codegen.tsclient:TypeScriptClientGenerator"),
    ],
)
