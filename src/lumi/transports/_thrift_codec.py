"""JSON-like values ⇄ thriftpy2 objects of the IDL ``lumi gen thrift`` writes.

The IDL text comes from :func:`lumi.codegen.thrift.thrift_schema` (the same walk that renders
the file) and is loaded in-process by thriftpy2: no compiler step. Each struct, argument list
and result gets a plan compiled once from the interface's schemas, so conversion knows the Lumi
type behind every Thrift type: bytes are base64 in JSON and ``binary`` here, enums of strings are
numbered, unions and ``Any`` travel as a string holding their JSON.

What the wire cannot carry is refused with INVALID_ARGUMENT, never truncated: an int beyond
i64, an int beyond 2**53 as a ``double``, null inside a list or map, an unknown enum value.
"""

from __future__ import annotations

import base64
import binascii
import io
import itertools
from collections.abc import Callable
from typing import Any

import pydantic_core
import thriftpy2

from lumi.codegen.schema import Field, Type, fields_of, type_of
from lumi.codegen.thrift import ThriftSchema, thrift_name
from lumi.model.errors import InvalidArgument, LumiError, StatusCode
from lumi.model.interface import ServiceInterface

Convert = Callable[[Any], Any]
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_SAFE_INT = 2**53
_URLSAFE = bytes.maketrans(b"-_", b"+/")
_JSON_KINDS = frozenset({"union", "any", "null"})
_modules = itertools.count()


class StructPlan:
    """Converts one struct (or argument list, or result) between JSON objects and objects."""

    __slots__ = ("by_key", "cls", "fields", "name")

    def __init__(self, name: str, cls: Any) -> None:
        self.name = name
        self.cls = cls
        self.fields: list[tuple[str, str, Convert | None, Convert | None, bool, bool]] = []
        self.by_key: dict[str, tuple[str, Convert | None, bool]] = {}

    def add(self, field: Field, encode: Convert | None, decode: Convert | None) -> None:
        nullable = field.type.nullable or field.type.kind in _JSON_KINDS
        # unset is null only where there is no default to fall back on
        null_when_unset = nullable and field.required
        attr = thrift_name(field.name)
        self.fields.append((field.name, attr, encode, decode, nullable, null_when_unset))
        self.by_key[field.name] = (attr, encode, nullable)

    def to_thrift(self, value: Any) -> Any:
        if not isinstance(value, dict):
            raise InvalidArgument(f"{self.name}: expected an object, got {_show(value)}")
        kwargs = {}
        for key, item in value.items():
            entry = self.by_key.get(key)
            if entry is None:
                raise InvalidArgument(f"{self.name} has no field {key!r}")
            attr, encode, nullable = entry
            if item is None:
                if not nullable:
                    raise InvalidArgument(f"{self.name}.{key} cannot be null")
                continue  # unset
            if encode is not None:
                try:
                    item = encode(item)
                except InvalidArgument as exc:
                    raise InvalidArgument(f"{self.name}.{key}: {exc.message}") from None
            kwargs[attr] = item
        return self.cls(**kwargs)

    def to_json(self, obj: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, attr, _, decode, _, null_when_unset in self.fields:
            item = getattr(obj, attr)
            if item is None:
                if null_when_unset:
                    out[key] = None
                continue
            out[key] = item if decode is None else decode(item)
        return out


class MethodPlan:
    """One function: its arguments struct, result struct and the result's converters."""

    __slots__ = ("args", "decode_result", "encode_result", "lumi", "name", "result", "void")

    def __init__(self, lumi: str, name: str, args: StructPlan, result_cls: Any) -> None:
        self.lumi = lumi
        self.name = name
        self.args = args
        self.result = result_cls
        self.void = True
        self.encode_result: Convert | None = None
        self.decode_result: Convert | None = None


class ServiceCodec:
    """The thriftpy2 module of one service's IDL and the conversion plans of its functions."""

    def __init__(self, iface: ServiceInterface, schema: ThriftSchema) -> None:
        self.schema = schema
        self.iface = iface
        self.module = thriftpy2.load_fp(
            io.StringIO(schema.idl), module_name=f"lumi_{next(_modules)}_thrift"
        )
        self.service = getattr(self.module, schema.service)
        self.error_cls = self.module.LumiError
        self._structs: dict[str, StructPlan] = {}
        self.methods: dict[str, MethodPlan] = {}  # by Lumi method name
        self.by_name: dict[str, MethodPlan] = {}  # by Thrift function name
        for method, info in iface.methods.items():
            name = thrift_name(method)
            args = StructPlan(f"{method} arguments", getattr(self.service, f"{name}_args"))
            for field in fields_of(info.params, info.param_names):
                args.add(field, *self._converters(field.type))
            plan = MethodPlan(method, name, args, getattr(self.service, f"{name}_result"))
            returns = type_of(info.returns)
            if returns.kind != "null":
                plan.void = False
                plan.encode_result, plan.decode_result = self._converters(returns)
            self.methods[method] = plan
            self.by_name[name] = plan

    def error(self, exc: LumiError) -> Any:
        """The IDL's ``LumiError`` exception for a Lumi error."""
        details = None if exc.details is None else pydantic_core.to_json(exc.details, fallback=repr)
        return self.error_cls(
            code=exc.code.grpc_value,
            message=exc.message,
            details_json=None if details is None else details.decode(),
        )

    @staticmethod
    def lumi_error(error: Any) -> LumiError:
        """The Lumi error a ``LumiError`` exception from the wire stands for."""
        codes = list(StatusCode)
        code = codes[error.code - 1] if 1 <= (error.code or 0) <= len(codes) else None
        details = None
        if error.details_json:
            try:
                details = pydantic_core.from_json(error.details_json)
            except ValueError:
                details = error.details_json
        cls = LumiError.for_code(code or StatusCode.UNKNOWN)
        return cls(error.message or "", details)

    def _struct(self, ref: str) -> StructPlan:
        found = self._structs.get(ref)
        if found is not None:
            return found
        plan = self._structs[ref] = StructPlan(ref, getattr(self.module, self.schema.structs[ref]))
        for field in fields_of(self.iface.defs[ref]):
            plan.add(field, *self._converters(field.type))
        return plan

    def _converters(self, t: Type) -> tuple[Convert | None, Convert | None]:
        """(encode JSON → Thrift, decode Thrift → JSON) for a value of type ``t``."""
        kind = t.kind
        if kind in _JSON_KINDS:
            return _json_text, _from_json_text
        if kind in ("string", "date", "datetime"):
            return _string, None
        if kind == "integer" or (kind == "literal" and _all(t.values, int)):
            return _int64, None
        if kind == "number":
            return _double, None
        if kind == "bytes":
            return _bytes_in, _bytes_out
        if kind in ("boolean", "literal"):
            return None, None
        if kind in ("array", "map"):
            assert t.item is not None
            encode, decode = self._converters(t.item)
            if kind == "array":
                return _list(encode), _list(decode)
            return _map(encode), _map(decode)
        if kind == "ref":
            if "enum" in self.iface.defs.get(t.ref, {}):
                return self._enum(t.ref)
            plan = self._struct(t.ref)
            return plan.to_thrift, plan.to_json
        return None, None

    def _enum(self, ref: str) -> tuple[Convert, Convert]:
        numbers = self.schema.enums[self.schema.structs[ref]]
        values = {number: value for value, number in numbers.items()}
        keyed = {(type(v), v): n for v, n in numbers.items()}

        def encode(value: Any) -> int:
            number = keyed.get((type(value), value))
            if number is None:
                valid = ", ".join(repr(v) for v in numbers)
                raise InvalidArgument(f"{value!r} is not a value of {ref} (valid: {valid})")
            return number

        def decode(number: int) -> Any:
            if number not in values:
                raise InvalidArgument(f"{number} is not a number of enum {ref}")
            return values[number]

        return encode, decode


def _all(values: tuple[Any, ...], kind: type) -> bool:
    return all(isinstance(v, kind) and not isinstance(v, bool) for v in values)


def _show(value: Any) -> str:
    return pydantic_core.to_json(value, fallback=repr)[:60].decode("utf-8", "replace")


def _list(convert: Convert | None) -> Convert:
    def run(value: Any) -> Any:
        if not isinstance(value, list):
            raise InvalidArgument(f"expected a list, got {_show(value)}")
        if convert is not _json_text and None in value:
            raise InvalidArgument("Thrift cannot carry null inside a list")
        return value if convert is None else [convert(item) for item in value]

    return run


def _map(convert: Convert | None) -> Convert:
    def run(value: Any) -> Any:
        if not isinstance(value, dict):
            raise InvalidArgument(f"expected an object, got {_show(value)}")
        if convert is not _json_text and None in value.values():
            raise InvalidArgument("Thrift cannot carry null as a map value")
        return value if convert is None else {k: convert(v) for k, v in value.items()}

    return run


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"expected a string, got {_show(value)}")
    return value


def _int64(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"expected an integer, got {_show(value)}")
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise InvalidArgument(f"{value} does not fit i64 (the Thrift wire type of int)")
    return value


def _double(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgument(f"expected a number, got {_show(value)}")
    if isinstance(value, int) and abs(value) > _SAFE_INT:
        raise InvalidArgument(f"{value} does not fit a double exactly")
    return float(value)


def _bytes_in(value: Any) -> bytes:
    if not isinstance(value, str):
        raise InvalidArgument(f"bytes travel as base64 text, got {_show(value)}")
    data = value.encode("ascii", "replace").translate(_URLSAFE)
    try:
        return base64.b64decode(data + b"=" * (-len(data) % 4), validate=True)
    except binascii.Error as exc:
        raise InvalidArgument(f"not base64: {exc}") from None


def _bytes_out(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).decode("ascii")


def _json_text(value: Any) -> str:
    return pydantic_core.to_json(value).decode()


def _from_json_text(value: str) -> Any:
    try:
        return pydantic_core.from_json(value)
    except ValueError:
        raise InvalidArgument(f"not JSON: {value[:60]!r}") from None
