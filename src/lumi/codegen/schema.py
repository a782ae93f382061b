"""A small type model read from the interface's JSON Schemas, shared by the generators.

Lumi's schemas come from pydantic for the JSON-like type system only, so they use a known subset
of JSON Schema. :func:`type_of` turns one schema into a :class:`Type`; :func:`models_of` turns
``$defs`` into :class:`Model` and :class:`Enum` definitions. Generators render these, never the
raw schema, so every target agrees on what a schema means.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator
from typing import Any, Literal

from lumi.model.interface import ServiceInterface

Kind = Literal[
    "string", "integer", "number", "boolean", "null", "bytes", "datetime", "date",
    "array", "map", "ref", "literal", "union", "any",
]  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Type:
    kind: Kind
    item: Type | None = None  # array items, map values
    ref: str = ""  # the $defs name for "ref"
    values: tuple[Any, ...] = ()  # "literal" values
    variants: tuple[Type, ...] = ()  # "union" arms (without null)
    nullable: bool = False

    def with_null(self) -> Type:
        return dataclasses.replace(self, nullable=True)


@dataclasses.dataclass(frozen=True)
class Field:
    name: str
    type: Type
    required: bool
    default: Any = None
    has_default: bool = False
    doc: str = ""


@dataclasses.dataclass(frozen=True)
class Model:
    name: str
    fields: tuple[Field, ...]
    doc: str = ""


@dataclasses.dataclass(frozen=True)
class Enum:
    name: str
    values: tuple[str | int, ...]
    doc: str = ""


_PRIMITIVES: dict[str, Kind] = {
    "string": "string", "integer": "integer", "number": "number", "boolean": "boolean",
    "null": "null",
}  # fmt: skip
_FORMATS: dict[str, Kind] = {
    "date-time": "datetime", "date": "date", "base64url": "bytes", "binary": "bytes",
}  # fmt: skip


def ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def type_of(schema: dict[str, Any]) -> Type:
    """The type a JSON Schema fragment describes."""
    if "$ref" in schema:
        return Type("ref", ref=ref_name(schema["$ref"]))
    if "anyOf" in schema or "oneOf" in schema:
        arms = [type_of(s) for s in schema.get("anyOf", schema.get("oneOf", []))]
        nullable = any(a.kind == "null" for a in arms)
        rest = [a for a in arms if a.kind != "null"]
        if not rest:
            return Type("null")
        if len(rest) == 1:
            return dataclasses.replace(rest[0], nullable=nullable or rest[0].nullable)
        return Type("union", variants=tuple(rest), nullable=nullable)
    if "const" in schema:
        return Type("literal", values=(schema["const"],))
    if "enum" in schema:
        return Type("literal", values=tuple(schema["enum"]))
    kind = schema.get("type")
    if isinstance(kind, list):
        return _union([type_of({**schema, "type": k}) for k in kind])
    if kind == "string" and schema.get("format") in _FORMATS:
        return Type(_FORMATS[schema["format"]])
    if kind == "array":
        return Type("array", item=type_of(schema.get("items", {})))
    if kind == "object":
        extra = schema.get("additionalProperties")
        return Type("map", item=type_of(extra) if isinstance(extra, dict) else Type("any"))
    if isinstance(kind, str) and kind in _PRIMITIVES:
        return Type(_PRIMITIVES[kind])
    return Type("any")


def _union(arms: list[Type]) -> Type:
    nullable = any(a.kind == "null" for a in arms)
    rest = [a for a in arms if a.kind != "null"]
    if len(rest) == 1:
        return dataclasses.replace(rest[0], nullable=nullable)
    return Type("union", variants=tuple(rest), nullable=nullable)


def fields_of(schema: dict[str, Any], order: Iterable[str] | None = None) -> tuple[Field, ...]:
    """The fields of an object schema (``order`` names the declaration order, if known)."""
    props: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))
    names = list(order) if order is not None else sorted(props)
    return tuple(
        Field(
            name=name,
            type=type_of(props[name]),
            required=name in required,
            default=props[name].get("default"),
            has_default="default" in props[name],
            doc=str(props[name].get("description", "")),
        )
        for name in names
        if name in props
    )


def models_of(defs: dict[str, Any]) -> list[Model | Enum]:
    """The named definitions, sorted by name."""
    out: list[Model | Enum] = []
    for name in sorted(defs):
        schema = defs[name]
        doc = str(schema.get("description", ""))
        if "enum" in schema:
            out.append(Enum(name, tuple(schema["enum"]), doc))
        else:
            out.append(Model(name, fields_of(schema), doc))
    return out


def refs_in(schema: Any) -> Iterator[str]:
    """Every ``$defs`` name a schema refers to (directly)."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "$ref" and isinstance(value, str):
                yield ref_name(value)
            else:
                yield from refs_in(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from refs_in(value)


def reachable(defs: dict[str, Any], roots: Iterable[Any]) -> set[str]:
    """Names of the definitions reachable from the ``roots`` schemas."""
    seen: set[str] = set()
    todo = [name for root in roots for name in refs_in(root)]
    while todo:
        name = todo.pop()
        if name in seen or name not in defs:
            continue
        seen.add(name)
        todo.extend(refs_in(defs[name]))
    return seen


def all_schemas(iface: ServiceInterface) -> list[dict[str, Any]]:
    """Every top-level schema of an interface: params, returns, event payloads."""
    out: list[dict[str, Any]] = []
    for name in sorted(iface.methods):
        out += [iface.methods[name].params, iface.methods[name].returns]
    out += [iface.events[name].payload for name in sorted(iface.events)]
    return out


def pascal(name: str) -> str:
    """``place_order`` / ``place-order`` / ``placeOrder`` → ``PlaceOrder``."""
    parts = re.split(r"[^0-9A-Za-z]+", name)
    words = [w for p in parts for w in re.split(r"(?<=[a-z0-9])(?=[A-Z])", p) if w]
    text = "".join(w[:1].upper() + w[1:] for w in words) or "X"
    return text if not text[0].isdigit() else f"X{text}"


def snake(name: str) -> str:
    """``PlaceOrder`` / ``place-order`` → ``place_order``."""
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    text = re.sub(r"[^0-9A-Za-z]+", "_", text).strip("_").lower() or "x"
    return text if not text[0].isdigit() else f"x_{text}"


def camel(name: str) -> str:
    text = pascal(name)
    return text[:1].lower() + text[1:]


def ident(name: str) -> str:
    """A safe identifier in most languages (letters, digits, underscore; not starting with a
    digit), keeping the name when it already is one."""
    text = re.sub(r"[^0-9A-Za-z_]", "_", name) or "x"
    return text if not text[0].isdigit() else f"_{text}"
