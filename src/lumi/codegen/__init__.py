"""Code generation: the interface JSON projected into every framework's files.

One module per target, each a :class:`~lumi.codegen.base.Generator`; the registry below maps
target names to them (third-party targets register a ``lumi.generators`` entry point).
"""

from __future__ import annotations

from lumi.backends import Backend, Registry
from lumi.codegen.base import Generator

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


def targets() -> list[str]:
    return sorted(GENERATORS.names())


def get_generator(name: str) -> Generator:
    """The generator called ``name``; a ValueError with a suggestion for an unknown one."""
    try:
        GENERATORS.check(name)
    except ValueError as exc:
        raise ValueError(str(exc).replace("unknown generator", "unknown target")) from None
    generator: Generator = GENERATORS.load(name)()
    return generator
