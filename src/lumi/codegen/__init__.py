"""Code generation: the interface JSON projected into every framework's files.

One module per target, each a :class:`~lumi.codegen.base.Generator`; the registry in
:mod:`lumi.backends` maps target names to them (third-party targets register a
``lumi.generators`` entry point).
"""

from __future__ import annotations

from lumi.backends import GENERATORS
from lumi.codegen.base import Generator


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
