"""``proto``: a proto3 file per service, for gRPC.

Mapping (see docs/codegen.md): a message per model and per method request/response (a response
wraps the result in field ``value``); ``int`` → int64, ``float`` → double, ``datetime`` →
google.protobuf.Timestamp, ``date`` → string (ISO 8601), ``bytes`` → bytes, ``list`` → repeated,
``dict[str, T]`` → map; nullable scalars are ``optional``. Types protobuf cannot express directly
(unions, lists of lists, maps of lists, ``Any``) become google.protobuf.Value. Every field keeps
the JSON name Lumi uses (``json_name``), field numbers come from the lock, and removed fields are
``reserved``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from google.protobuf import descriptor_pb2

from lumi.codegen.base import GenerateRequest, Generator, doc_lines
from lumi.codegen.numbering import Numbering, numbered_files
from lumi.codegen.schema import (
    Enum,
    Field,
    Type,
    camel,
    fields_of,
    ident,
    models_of,
    pascal,
    snake,
    type_of,
)
from lumi.model.interface import ServiceInterface

_SCALARS = {
    "string": "string", "integer": "int64", "number": "double", "boolean": "bool",
    "bytes": "bytes", "date": "string", "datetime": "google.protobuf.Timestamp",
}  # fmt: skip
_VALUE = "google.protobuf.Value"
_FD = descriptor_pb2.FieldDescriptorProto
_WIRE_TYPES = {
    "string": _FD.TYPE_STRING, "int64": _FD.TYPE_INT64, "double": _FD.TYPE_DOUBLE,
    "bool": _FD.TYPE_BOOL, "bytes": _FD.TYPE_BYTES,
}  # fmt: skip


@dataclasses.dataclass
class ProtoSchema:
    """What serving the generated ``.proto`` needs, built by the same walk that renders it.

    ``descriptor`` is the file as protoc would compile it (no source info); ``enum_values``
    maps each enum's full name to {number: the Lumi value}; ``nullable`` holds the full names
    (``pkg.Message.field``) of fields whose Lumi type admits null; ``methods`` maps a Lumi
    method name to (rpc name, request message, response message) full names.
    """

    descriptor: descriptor_pb2.FileDescriptorProto
    service: str
    enum_values: dict[str, dict[int, Any]] = dataclasses.field(default_factory=dict)
    nullable: set[str] = dataclasses.field(default_factory=set)
    required: set[str] = dataclasses.field(default_factory=set)
    methods: dict[str, tuple[str, str, str]] = dataclasses.field(default_factory=dict)


def proto_schema(
    iface: ServiceInterface, package: str, lock: dict[str, Any] | None = None
) -> ProtoSchema:
    """The descriptor of the file ``lumi gen proto`` writes for ``iface`` (``lock``: the
    ``proto`` section of ``lumi.lock.json``, for the same field numbers)."""
    file = _ProtoFile(iface, package, Numbering(lock))
    file.render()
    return file.schema


class ProtoGenerator(Generator):
    name = "proto"
    description = "proto3 services and messages for gRPC"
    uses_lock = True

    def generate(self, request: GenerateRequest) -> dict[str, str]:
        return numbered_files(
            request,
            "proto",
            "proto",
            lambda iface, n: _ProtoFile(iface, request.package, n).render(),
        )


class _ProtoFile:
    def __init__(self, iface: ServiceInterface, package: str, numbering: Numbering) -> None:
        self.iface = iface
        self.package = f"{package}.{snake(iface.name)}"
        self.numbering = numbering
        self.imports: set[str] = set()
        self.names = {name: pascal(name) for name in iface.defs}
        self.enums = {name for name, schema in iface.defs.items() if "enum" in schema}
        self.taken = set(self.names.values())
        self.schema = ProtoSchema(
            descriptor_pb2.FileDescriptorProto(
                name=f"{snake(iface.name)}.proto", package=self.package, syntax="proto3"
            ),
            service=f"{self.package}.{pascal(iface.name)}",
        )

    def render(self) -> str:
        body: list[str] = []
        for definition in models_of(self.iface.defs):
            if isinstance(definition, Enum):
                body += self._enum(definition)
            else:
                body += self._message(
                    self.names[definition.name], definition.fields, definition.doc
                )
        service_lines = []
        for method_name in sorted(self.iface.methods):
            info = self.iface.methods[method_name]
            base = self._free(pascal(method_name))
            request_name, response_name = f"{base}Request", f"{base}Response"
            fields = fields_of(info.params, info.param_names)
            body += self._message(request_name, fields, f"The arguments of {method_name}.")
            result = (
                []
                if info.returns.get("type") == "null"
                else [Field("value", type_of(info.returns), required=True)]
            )
            body += self._message(response_name, tuple(result), f"The result of {method_name}.")
            service_lines += _comment(info.doc, "  ")
            options = " { option idempotency_level = IDEMPOTENT; }" if info.idempotent else ";"
            service_lines.append(
                f"  rpc {pascal(method_name)}({request_name}) returns ({response_name}){options}"
            )
            self._method(method_name, request_name, response_name, info.idempotent)
        for event_name in sorted(self.iface.events):
            event = self.iface.events[event_name]
            if "$ref" not in event.payload:
                wrapper = self._free(f"{pascal(event_name)}Event")
                body += self._message(
                    wrapper, (Field("value", type_of(event.payload), True),), f"Event {event_name}."
                )
        self.schema.descriptor.dependency.extend(sorted(self.imports))
        head = ['syntax = "proto3";', "", f"package {self.package};", ""]
        head += [f'import "{name}";' for name in sorted(self.imports)]
        if self.imports:
            head.append("")
        head += _comment(f"Generated by `lumi gen proto` from {self.iface.name} "
                         f"{self.iface.version}. Do not edit.", "")  # fmt: skip
        head += [""]
        service = [*_comment(self.iface.doc, ""), f"service {pascal(self.iface.name)} {{"]
        service += [*service_lines, "}", ""]
        events = self._events()
        return "\n".join(head + service + events + body).rstrip("\n") + "\n"

    def _method(self, name: str, request: str, response: str, idempotent: bool) -> None:
        service = self.schema.descriptor.service
        if not service:
            service.add(name=pascal(self.iface.name))
        method = service[0].method.add(
            name=pascal(name),
            input_type=f".{self.package}.{request}",
            output_type=f".{self.package}.{response}",
        )
        if idempotent:
            method.options.idempotency_level = descriptor_pb2.MethodOptions.IDEMPOTENT
        self.schema.methods[name] = (
            pascal(name),
            f"{self.package}.{request}",
            f"{self.package}.{response}",
        )

    def _free(self, name: str) -> str:
        while name in self.taken:
            name += "Msg"
        self.taken.add(name)
        return name

    def _events(self) -> list[str]:
        if not self.iface.events:
            return []
        lines = ["// Events (topic -> payload message):"]
        for name in sorted(self.iface.events):
            payload = self.iface.events[name].payload
            if "$ref" in payload:
                kind = self.names.get(str(payload["$ref"]).rsplit("/", 1)[-1], "?")
            else:
                kind = f"{pascal(name)}Event"
            lines.append(f"//   {self.iface.topic(name)} -> {kind}")
        return [*lines, ""]

    def _message(self, name: str, fields: tuple[Field, ...], doc: str) -> list[str]:
        owner = f"{self.package}.{name}"
        numbers = self.numbering.assign(owner, [f.name for f in fields])
        lines = [*_comment(doc, ""), f"message {name} {{"]
        message = self.schema.descriptor.message_type.add(name=name)
        reserved = self.numbering.reserved(owner)
        if reserved:
            lines.append(f"  reserved {', '.join(str(n) for n in reserved.values())};")
            lines.append(f"  reserved {', '.join(json.dumps(n) for n in reserved)};")
            for number in reserved.values():
                message.reserved_range.add(start=number, end=number + 1)
            message.reserved_name.extend(reserved)
        optionals = []
        for field in fields:
            lines += _comment(field.doc, "  ")
            label, proto_type = self._field_type(field)
            name = ident(field.name)
            json_name = f' [json_name = "{field.name}"]' if camel(name) != field.name else ""
            lines.append(f"  {label}{proto_type} {name} = {numbers[field.name]}{json_name};")
            # protoc's json_name is the explicit one, else camelCase of the name: both are
            # the JSON key Lumi uses (an explicit one is written exactly when they differ).
            described = message.field.add(
                name=name, number=numbers[field.name], json_name=field.name
            )
            self._describe(message, described, label, proto_type)
            if label == "optional ":
                optionals.append(described)
            if field.type.nullable or field.type.kind in ("null", "any"):
                self.schema.nullable.add(f"{owner}.{name}")
            if field.required:
                self.schema.required.add(f"{owner}.{name}")
        for described in optionals:  # synthetic oneofs follow the real ones (there are none)
            described.proto3_optional = True
            described.oneof_index = len(message.oneof_decl)
            message.oneof_decl.add(name=f"_{described.name}")
        return [*lines, "}", ""]

    def _describe(
        self,
        message: descriptor_pb2.DescriptorProto,
        field: descriptor_pb2.FieldDescriptorProto,
        label: str,
        proto_type: str,
    ) -> None:
        field.label = _FD.LABEL_REPEATED if label == "repeated " else _FD.LABEL_OPTIONAL
        if proto_type.startswith("map<"):
            value_type = proto_type[len("map<string, ") : -1]
            entry = message.nested_type.add(name=_map_entry_name(field.name))
            entry.options.map_entry = True
            entry.field.add(
                name="key", number=1, label=_FD.LABEL_OPTIONAL, type=_FD.TYPE_STRING,
                json_name="key",
            )  # fmt: skip
            value = entry.field.add(
                name="value", number=2, label=_FD.LABEL_OPTIONAL, json_name="value"
            )
            self._set_type(value, value_type)
            field.label = _FD.LABEL_REPEATED
            field.type = _FD.TYPE_MESSAGE
            field.type_name = f".{self.package}.{message.name}.{entry.name}"
            return
        self._set_type(field, proto_type)

    def _set_type(self, field: descriptor_pb2.FieldDescriptorProto, proto_type: str) -> None:
        if proto_type in _WIRE_TYPES:
            field.type = _WIRE_TYPES[proto_type]
        elif proto_type.startswith("google.protobuf."):
            field.type = _FD.TYPE_MESSAGE
            field.type_name = f".{proto_type}"
        else:
            is_enum = proto_type in {self.names[e] for e in self.enums}
            field.type = _FD.TYPE_ENUM if is_enum else _FD.TYPE_MESSAGE
            field.type_name = f".{self.package}.{proto_type}"

    def _enum(self, enum: Enum) -> list[str]:
        name = self.names[enum.name]
        prefix = snake(name).upper()
        values = {
            f"{prefix}_{re.sub(r'[^0-9A-Za-z]+', '_', str(v)).upper()}": v for v in enum.values
        }
        doc = enum.doc or f"Values: {', '.join(map(str, enum.values))}."
        lines = [*_comment(doc, ""), f"enum {name} {{"]
        numbered: list[tuple[str, int]] = []
        numbers: dict[str, int] = {}
        ints = all(isinstance(v, int) for v in enum.values)
        if ints:
            if 0 not in enum.values:
                numbered.append((f"{prefix}_UNSPECIFIED", 0))
            numbered += [(label, int(value)) for label, value in values.items()]
        else:
            numbers = self.numbering.assign(f"{self.package}.{name}", [str(v) for v in enum.values])
            numbered.append((f"{prefix}_UNSPECIFIED", 0))
            numbered += [(label, numbers[str(value)]) for label, value in values.items()]
        lines += [f"  {label} = {number};" for label, number in numbered]
        described = self.schema.descriptor.enum_type.add(name=name)
        for label, number in numbered:
            described.value.add(name=label, number=number)
        self.schema.enum_values[f"{self.package}.{name}"] = {
            (int(v) if ints else numbers[str(v)]): v for v in enum.values
        }
        return [*lines, "}", ""]

    def _field_type(self, field: Field) -> tuple[str, str]:
        t = field.type
        if t.kind == "array":
            assert t.item is not None
            if _nested(t.item):
                self.imports.add("google/protobuf/struct.proto")
                return "repeated ", _VALUE
            return "repeated ", self._scalar(t.item)
        if t.kind == "map":
            assert t.item is not None
            if _nested(t.item):
                self.imports.add("google/protobuf/struct.proto")
                return "", f"map<string, {_VALUE}>"
            return "", f"map<string, {self._scalar(t.item)}>"
        proto_type = self._scalar(t)
        is_message = proto_type == _VALUE or (t.kind == "ref" and t.ref not in self.enums)
        # Messages always have presence; scalars and enums need `optional` to tell "unset".
        optional = not is_message and (t.nullable or not field.required)
        return ("optional " if optional else ""), proto_type

    def _scalar(self, t: Type) -> str:
        if t.kind in _SCALARS:
            if t.kind == "datetime":
                self.imports.add("google/protobuf/timestamp.proto")
            return _SCALARS[t.kind]
        if t.kind == "ref":
            return self.names.get(t.ref, pascal(t.ref))
        if t.kind == "literal":
            if all(isinstance(v, bool) for v in t.values):
                return "bool"
            if all(isinstance(v, int) for v in t.values):
                return "int64"
            return "string"
        self.imports.add("google/protobuf/struct.proto")
        return _VALUE


def _map_entry_name(field: str) -> str:
    """protoc's name for a map field's entry message: ``by_name`` → ``ByNameEntry``."""
    out, upper = [], True
    for char in field:
        if char == "_":
            upper = True
        elif upper:
            out.append(char.upper())
            upper = False
        else:
            out.append(char)
    return "".join(out) + "Entry"


def _nested(t: Type) -> bool:
    return t.kind in ("array", "map", "union", "any", "null") or (t.nullable and t.kind != "ref")


def _comment(text: str, indent: str) -> list[str]:
    return [f"{indent}// {line}".rstrip() for line in doc_lines(text)]
