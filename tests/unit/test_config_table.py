"""Every config key the loader accepts appears in the README's reference table, and every key
the table names is one the loader accepts."""

from __future__ import annotations

import re
import types
import typing
from typing import Any

import pydantic

from lumi.config import _File
from tests.conftest import ROOT

# What a table key writes for a name the user chooses, by the dict field it is a key of.
PLACEHOLDERS = {"services": "X", "capabilities": "Y"}
# Keys whose value may be a table, documented as one row with the table's fields as values.
ONE_VALUE = {"retry"}


def _model_in(annotation: Any) -> type[pydantic.BaseModel] | None:
    """The model ``annotation`` is or makes optional (``Model | None``), if any."""
    candidates = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else ()
    for candidate in (annotation, *candidates):
        if isinstance(candidate, type) and issubclass(candidate, pydantic.BaseModel):
            return candidate
    return None


def loader_keys(model: type[pydantic.BaseModel], prefix: str = "") -> set[str]:
    """Every leaf key of ``model``, dotted, with placeholders for chosen names."""
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        annotation = field.annotation
        inner = _model_in(annotation)
        if typing.get_origin(annotation) is dict and name in PLACEHOLDERS:
            value = _model_in(typing.get_args(annotation)[1])
            assert value is not None, path
            keys |= loader_keys(value, f"{path}.{PLACEHOLDERS[name]}.")
        elif inner is not None and name not in ONE_VALUE:
            keys |= loader_keys(inner, f"{path}.")
        else:
            keys.add(path)
    return keys


def table_keys() -> set[str]:
    """The keys the README's config table names; ``.key`` continues the cell's first key."""
    text = (ROOT / "README.md").read_text()
    start = text.index("| key | values | default |")
    rows = text[start:].split("\n\n", 1)[0].splitlines()[2:]
    keys: set[str] = set()
    for row in rows:
        cell = row.split("|")[1]
        names = re.findall(r"`([^`]+)`", cell)
        parent = names[0].rsplit(".", 1)[0]
        for name in names:
            keys.add(parent + name if name.startswith(".") else name)
    return keys


def test_the_readme_config_table_lists_exactly_the_keys_the_loader_accepts() -> None:
    """The README table and the loader's models name the same keys (env.NAME.* overlays them)."""
    accepted = loader_keys(_File) - {"env"}
    documented = table_keys() - {"env.NAME.*"}
    assert sorted(accepted - documented) == [], "accepted but not in the README table"
    assert sorted(documented - accepted) == [], "in the README table but not accepted"
