"""The "JSON-like" type system: what a Lumi method may take, return and publish.

Allowed: None, bool, int, float, str, bytes (base64 on JSON wires), datetime, date, list[T],
dict[str, T], Optional/Union, Literal, Enum, pydantic models and dataclasses whose fields are
allowed, and ``Annotated[T, ...]`` of any of these (pydantic constraints, :data:`Sensitive`).
Everything else is rejected when the service class is reflected, naming where it was found.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import types
import typing
from typing import Any, Final

import pydantic

from lumi.model.errors import DefinitionError

ALLOWED = (
    "None, bool, int, float, str, bytes, datetime, date, list[T], dict[str, T], Optional/Union, "
    "Literal, Enum, pydantic models and dataclasses"
)


class _SensitiveMarker:
    """Marks a parameter whose value must never be logged: ``Annotated[str, lumi.Sensitive]``."""

    def __repr__(self) -> str:
        return "lumi.Sensitive"


Sensitive: Final = _SensitiveMarker()

_SCALARS: frozenset[Any] = frozenset(
    {type(None), None, bool, int, float, str, bytes, datetime.datetime, datetime.date}
)
_BASE64 = "base64"


def is_sensitive(annotation: Any) -> bool:
    """True when ``Annotated[..., lumi.Sensitive]`` marks the annotation."""
    if typing.get_origin(annotation) is typing.Annotated:
        return any(m is Sensitive for m in typing.get_args(annotation)[1:])
    return False


def type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__qualname__
    return repr(tp).replace("typing.", "")


def check_type(tp: Any, where: str) -> None:
    """Raise :class:`DefinitionError` unless ``tp`` is JSON-like; ``where`` names its place."""
    _check(tp, where, set())


def _reject(tp: Any, where: str, hint: str = "") -> typing.NoReturn:
    extra = f"; {hint}" if hint else ""
    raise DefinitionError(
        f"{where} has type {type_name(tp)}, which Lumi cannot send over the wire "
        f"(allowed: {ALLOWED}){extra}"
    )


def _check(tp: Any, where: str, seen: set[Any]) -> None:
    if tp in _SCALARS:
        return
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        _check(args[0], where, seen)
        return
    if tp is typing.Any or tp is object:
        _reject(tp, where, "name a concrete type, e.g. dict[str, int] or a pydantic model")
    if origin is list or tp is list:
        if not args:
            _reject(tp, where, "say what the list holds, e.g. list[str]")
        _check(args[0], where, seen)
        return
    if origin is dict or tp is dict:
        if not args:
            _reject(tp, where, "say what the dict holds, e.g. dict[str, int]")
        if args[0] is not str:
            _reject(tp, where, "JSON object keys are strings: use dict[str, ...]")
        _check(args[1], where, seen)
        return
    if origin in (typing.Union, types.UnionType):
        for arm in args:
            _check(arm, where, seen)
        return
    if origin is typing.Literal:
        for value in args:
            if not isinstance(value, (str, int, bool)):
                _reject(tp, where, "Literal values must be str, int or bool")
        return
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        for member in tp:
            if not isinstance(member.value, (str, int)):
                _reject(tp, where, f"enum {tp.__name__} must have str or int values")
        return
    if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel):
        _check_model(tp, where, seen)
        return
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        _check_dataclass(tp, where, seen)
        return
    if origin in (set, frozenset, tuple) or tp in (set, frozenset, tuple):
        _reject(tp, where, "use list[T] instead")
    _reject(tp, where)


def _check_model(model: type[pydantic.BaseModel], where: str, seen: set[Any]) -> None:
    if model in seen:
        return
    seen.add(model)
    for name, field in model.model_fields.items():
        annotation = _field_annotation(field)
        field_where = f"{where} -> {model.__name__}.{name}"
        _check(annotation, field_where, seen)
        if _mentions_bytes(annotation) and not _base64_config(model.model_config):
            raise DefinitionError(
                f"{field_where} is bytes, but model {model.__name__} would send bytes as UTF-8 "
                f"text; add model_config = ConfigDict(ser_json_bytes='base64', "
                f"val_json_bytes='base64') so bytes travel as base64"
            )


def _check_dataclass(cls: type, where: str, seen: set[Any]) -> None:
    if cls in seen:
        return
    seen.add(cls)
    hints = typing.get_type_hints(cls, include_extras=True)
    for field in dataclasses.fields(cls):
        annotation = hints.get(field.name, field.type)
        field_where = f"{where} -> {cls.__name__}.{field.name}"
        _check(annotation, field_where, seen)
        config = getattr(cls, "__pydantic_config__", {}) or {}
        if _mentions_bytes(annotation) and not _base64_config(config):
            raise DefinitionError(
                f"{field_where} is bytes, but dataclass {cls.__name__} would send bytes as UTF-8 "
                f"text; decorate it with @pydantic.dataclasses.dataclass(config=ConfigDict("
                f"ser_json_bytes='base64', val_json_bytes='base64'))"
            )


def _field_annotation(field: Any) -> Any:
    annotation = field.annotation
    if field.metadata:
        return typing.Annotated[annotation, *field.metadata]
    return annotation


def _mentions_bytes(tp: Any) -> bool:
    if tp is bytes:
        return True
    return any(_mentions_bytes(arg) for arg in typing.get_args(tp) if not isinstance(arg, str))


def _base64_config(config: Any) -> bool:
    return bool(config.get("ser_json_bytes") == _BASE64 and config.get("val_json_bytes") == _BASE64)


WIRE_CONFIG: Final = pydantic.ConfigDict(
    ser_json_bytes="base64", val_json_bytes="base64", extra="forbid"
)
"""The config of the models Lumi builds itself (parameter objects): bytes as base64."""
