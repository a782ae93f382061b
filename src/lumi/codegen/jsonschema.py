"""``jsonschema``: a self-contained JSON Schema (2020-12) file per model and per event payload.

``<Service>/models/<Model>.schema.json`` and ``<Service>/events/<event>.schema.json``; each
carries only the definitions it refers to, so any validator can use one file alone.
"""

from __future__ import annotations

from typing import Any

from lumi.codegen.base import GenerateRequest, Generator, dump_json
from lumi.codegen.schema import reachable
from lumi.model.interface import ServiceInterface

DIALECT = "https://json-schema.org/draft/2020-12/schema"


class JsonSchemaGenerator(Generator):
    name = "jsonschema"
    description = "one JSON Schema file per model and event payload"

    def generate(self, request: GenerateRequest) -> dict[str, str]:
        files: dict[str, str] = {}
        for iface in sorted(request.interfaces, key=lambda i: i.name):
            for name in sorted(iface.defs):
                schema = _standalone(iface, {"$ref": f"#/$defs/{name}"})
                schema["$id"] = f"urn:lumi:{iface.name}:model:{name}"
                files[f"{iface.name}/models/{name}.schema.json"] = dump_json(schema)
            for name in sorted(iface.events):
                schema = _standalone(iface, iface.events[name].payload)
                schema["$id"] = f"urn:lumi:{iface.name}:event:{name}"
                schema["title"] = schema.get("title", iface.topic(name))
                files[f"{iface.name}/events/{name}.schema.json"] = dump_json(schema)
        return files


def _standalone(iface: ServiceInterface, root: dict[str, Any]) -> dict[str, Any]:
    needed = reachable(iface.defs, [root])
    schema: dict[str, Any] = {"$schema": DIALECT, **root}
    if needed:
        schema["$defs"] = {name: iface.defs[name] for name in sorted(needed)}
    return schema
