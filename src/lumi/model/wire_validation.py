"""Validators for what arrives on the wire: what the published JSON Schema rejects, they reject,
and a bad request costs no more than parsing it.

pydantic's own validators are built for Python input; on the wire three of their habits hurt:

* they collect *every* error, so a list of a million wrong items makes a million errors (and
  seconds of work turning them into Python objects) — here every list, tuple, set and dict stops
  at its first bad item (pydantic's ``fail_fast``);
* a model that forbids unknown fields makes one error per unknown key — here the unknown keys
  of such a model become one error naming the first few (for the top-level model, with
  ``keep_extras``, they are kept in ``__pydantic_extra__`` for the caller to refuse with
  :func:`extras_message`: raising from inside the validator would copy the whole input);
* JSON has no NaN or Infinity, yet ``NaN``, ``Infinity`` and ``1e400`` arrive as floats and are
  later written back as ``null`` — here every float must be finite.

And one habit of strict mode: it refuses ``5.0`` for an integer, which JSON Schema calls an
integer (any number with no fractional part) — here an integer is a JSON integer or such a
number, and never a string or a boolean.

:func:`wire_validator` compiles a core schema with those three changes into a
``SchemaValidator``; the dispatcher validates with it, in strict mode by default, so ``"5"`` is
not an integer and ``false`` is not ``0``.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

from pydantic_core import CoreConfig, PydanticCustomError, SchemaValidator

_COLLECTIONS = frozenset({"list", "tuple", "set", "frozenset", "dict"})
_NAMED = 5  # unknown field names quoted in the error


def wire_validator(
    schema: Any, config: CoreConfig | None = None, *, keep_extras: bool = False
) -> SchemaValidator:
    """A validator for ``schema`` (a pydantic core schema) hardened as the module says; with
    ``keep_extras``, a top-level model that forbids unknown fields keeps them in
    ``__pydantic_extra__`` instead (check it with :func:`extras_message`)."""
    hardened = copy.deepcopy(schema)
    classes: set[type] = set()
    top = _top_model(hardened)
    if keep_extras and top is not None and _forbids_extra(top):
        top["schema"]["extra_behavior"] = "allow"  # so _harden leaves it unwrapped
    hardened = _harden(hardened, classes)
    # pydantic-core reuses the validator a complete model class already has instead of
    # building one from the schema given; hide completeness while building, so ours is used.
    hidden = [cls for cls in classes if cls.__dict__.get("__pydantic_complete__") is True]
    for cls in hidden:
        type.__setattr__(cls, "__pydantic_complete__", False)
    try:
        return SchemaValidator(hardened, config)
    finally:
        for cls in hidden:
            type.__setattr__(cls, "__pydantic_complete__", True)


def _harden(node: Any, classes: set[type]) -> Any:
    if isinstance(node, list):
        return [_harden(item, classes) for item in node]
    if not isinstance(node, dict):
        return node
    for key, value in node.items():
        if key not in ("cls", "function", "metadata", "default", "serialization"):
            node[key] = _harden(value, classes)
    kind = node.get("type")
    if kind in _COLLECTIONS:
        node["fail_fast"] = True
    elif kind == "float":
        node["allow_inf_nan"] = False
    elif kind == "int":
        return _integral(node)
    elif kind in ("model", "dataclass"):
        if isinstance(node.get("cls"), type):
            classes.add(node["cls"])
        if kind == "model" and _forbids_extra(node):
            return _bounded_extras(node)
    return node


def _integral(node: dict[str, Any]) -> dict[str, Any]:
    """An int schema that also takes a finite float with no fractional part (``5.0``)."""
    bounds = {k: node[k] for k in ("gt", "ge", "lt", "le", "multiple_of") if k in node}
    as_float: dict[str, Any] = {
        "type": "chain",
        "steps": [
            {"type": "float", "strict": True, "allow_inf_nan": False},
            {"type": "function-plain", "function": {"type": "no-info", "function": _to_int}},
        ],
    }
    schema: dict[str, Any] = {
        "type": "union",
        "choices": [{"type": "int", "strict": True}, as_float],
        "mode": "left_to_right",
        "custom_error_type": "int_type",  # one error, not one per way of being an integer
    }
    if bounds:  # checked after, so their own messages come through
        schema = {"type": "chain", "steps": [schema, {"type": "int", "strict": True, **bounds}]}
    if "ref" in node:
        schema["ref"] = node["ref"]
    return schema


def _to_int(value: float) -> int:
    if not value.is_integer():
        raise PydanticCustomError("int_from_float", "Input should be a valid integer")
    return int(value)


def _top_model(schema: dict[str, Any]) -> dict[str, Any] | None:
    top = schema["schema"] if schema.get("type") == "definitions" else schema
    if top.get("type") == "definition-ref":
        ref = top.get("schema_ref")
        top = next((d for d in schema.get("definitions", ()) if d.get("ref") == ref), {})
    return top if top.get("type") == "model" else None


def extras_message(extra: dict[str, Any] | None) -> str | None:
    """What is wrong with a model's unknown fields (None if there are none), kept short."""
    if not extra:
        return None
    names = ", ".join(repr(_short(name)) for name in itertools.islice(extra, _NAMED))
    more = len(extra) - min(len(extra), _NAMED)
    return f"Extra inputs are not permitted: {names}{f' and {more} more' if more else ''}"


def _forbids_extra(model: dict[str, Any]) -> bool:
    fields = model.get("schema", {})
    if fields.get("type") != "model-fields":
        return False
    behaviour = fields.get("extra_behavior") or model.get("config", {}).get("extra_fields_behavior")
    return bool(behaviour == "forbid")


def _bounded_extras(model: dict[str, Any]) -> dict[str, Any]:
    """Accept unknown keys into ``__pydantic_extra__``, then refuse them with one error."""
    model["schema"]["extra_behavior"] = "allow"
    wrapper: dict[str, Any] = {
        "type": "function-after",
        "function": {"type": "no-info", "function": _refuse_extras},
        "schema": model,
    }
    if "ref" in model:  # references (recursive models) must reach the wrapper
        wrapper["ref"] = model.pop("ref")
    return wrapper


def _refuse_extras(instance: Any) -> Any:
    extra = instance.__pydantic_extra__
    if extra:
        names = ", ".join(repr(_short(name)) for name in itertools.islice(extra, _NAMED))
        more = len(extra) - min(len(extra), _NAMED)
        raise PydanticCustomError(
            "extra_forbidden",
            "Extra inputs are not permitted: {names}{more}",
            {"names": names, "more": f" and {more} more" if more else ""},
        )
    object.__setattr__(instance, "__pydantic_extra__", None)  # as a model that forbids has
    return instance


def _short(name: str) -> str:
    return name if len(name) <= 32 else name[:32] + "…"
