"""``openapi``: an OpenAPI 3.1 document per service, describing the HTTP/JSON transport.

OpenAPI 3.1 schemas are JSON Schema 2020-12, so the interface's schemas are used as they are,
with ``#/$defs/X`` references moved to ``#/components/schemas/X``. Every method is
``POST /<service>/<method>``; errors share one ``Error`` schema and are listed with the HTTP
statuses of Lumi's status codes; the correlation/deadline/idempotency headers are parameters.

Security (docs/security.md): every operation needs a client certificate of the app's CA
(``mutualTLS``, what ``lumi run`` and rendered deployments use by default) except public
methods, which need nothing — or, on a service with an ``@lumi.auth`` handler, a bearer token
(``bearerAuth``, a JWT) — and the health probes.
"""

from __future__ import annotations

from typing import Any

from lumi.codegen.base import GenerateRequest, Generator, dump_json
from lumi.model.errors import StatusCode
from lumi.model.interface import ServiceInterface
from lumi.pipeline import edge

_REF_FROM, _REF_TO = "#/$defs/", "#/components/schemas/"
_JSON = "application/json"


def _token(limit: int) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": limit, "pattern": edge.TOKEN_PATTERN}


# The metadata headers with the rules the server's edge enforces (lumi.pipeline.edge).
_HEADERS = {
    "CorrelationId": (
        edge.CORRELATION_ID,
        "Correlation id; one is made when absent.",
        _token(edge.MAX_CORRELATION_ID),
    ),
    "TraceParent": (
        edge.TRACEPARENT,
        "W3C trace context (a malformed one starts a new trace).",
        _token(edge.MAX_TRACEPARENT),
    ),
    "Deadline": (
        edge.DEADLINE,
        "Absolute deadline, Unix epoch milliseconds; the callee stops working at it.",
        {"type": "integer", "minimum": 0, "maximum": 10**edge.MAX_DEADLINE_DIGITS - 1},
    ),
    "IdempotencyKey": (
        edge.IDEMPOTENCY_KEY,
        "Identifies one logical call across retries; reused with other arguments it is "
        "FAILED_PRECONDITION.",
        _token(edge.MAX_IDEMPOTENCY_KEY),
    ),
}
_EXTRA_STATUSES = {
    408: "Request not received in time",
    413: "Request body too large",
    414: "Request URL too long",
    415: "Content type is not JSON",
    431: "Request headers too large",
}


_EXTRA_CODES = {408: "DEADLINE_EXCEEDED", 413: "RESOURCE_EXHAUSTED"}
_SECURITY_SCHEMES = {
    "mutualTLS": {
        "type": "mutualTLS",
        "description": "A client certificate issued by the app's CA, naming the caller's "
        "identity spiffe://<app>/<service> (lumi run: .lumi/ca/certs/operator).",
    },
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An end user's token, verified by the service's @lumi.auth handler.",
    },
}


def relink(schema: Any) -> Any:
    """A copy of ``schema`` with ``$defs`` references pointing at components."""
    if isinstance(schema, dict):
        out = {}
        for key, value in schema.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(_REF_FROM):
                out[key] = _REF_TO + value[len(_REF_FROM) :]
            else:
                out[key] = relink(value)
        return out
    if isinstance(schema, list):
        return [relink(v) for v in schema]
    return schema


def error_statuses() -> dict[int, list[str]]:
    """HTTP status → the Lumi codes that use it."""
    statuses: dict[int, list[str]] = {}
    for code in StatusCode:
        statuses.setdefault(code.http_status, []).append(code.value)
    return dict(sorted(statuses.items()))


class OpenApiGenerator(Generator):
    name = "openapi"
    description = "OpenAPI 3.1 for the HTTP/JSON transport"

    def generate(self, request: GenerateRequest) -> dict[str, str]:
        return {
            f"{iface.name}.openapi.json": dump_json(document(iface))
            for iface in sorted(request.interfaces, key=lambda i: i.name)
        }


def document(iface: ServiceInterface) -> dict[str, Any]:
    """The OpenAPI document of one service."""
    paths: dict[str, Any] = {}
    for name in sorted(iface.methods):
        paths[f"/{iface.name}/{name}"] = {"post": _operation(iface, name)}
    schemes = {k: v for k, v in _SECURITY_SCHEMES.items() if iface.auth or k != "bearerAuth"}
    paths["/healthz"] = {"get": _probe("Alive", "healthz")}
    paths["/readyz"] = {
        "get": _probe("Ready to serve (503 while starting, draining or unhealthy)", "readyz")
    }
    paths["/interface"] = {
        "get": {
            "operationId": "interface",
            "summary": "The Lumi interfaces served here, by service name",
            "security": [{}],
            "responses": {
                "200": {
                    "description": "Interfaces",
                    "content": {_JSON: {"schema": {"type": "object"}}},
                }
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"{iface.name} API",
            "version": iface.version,
            "description": iface.doc or f"The {iface.name} service.",
        },
        "security": [{"mutualTLS": []}],
        "paths": paths,
        "components": {
            "schemas": {
                **{name: relink(schema) for name, schema in sorted(iface.defs.items())},
                "Error": _error_schema(),
            },
            "parameters": {
                key: {
                    "name": header,
                    "in": "header",
                    "required": False,
                    "description": text,
                    "schema": schema,
                }
                for key, (header, text, schema) in _HEADERS.items()
            },
            "headers": {
                "CorrelationId": {
                    "description": "The call's correlation id.",
                    "schema": {"type": "string"},
                }
            },
            "responses": _error_responses(),
            "securitySchemes": schemes,
        },
    }


def _operation(iface: ServiceInterface, name: str) -> dict[str, Any]:
    info = iface.methods[name]
    summary = info.doc.strip().splitlines()[0] if info.doc.strip() else f"{iface.name}.{name}"
    responses: dict[str, Any] = {
        "200": {
            "description": "The result",
            "headers": {"x-correlation-id": {"$ref": "#/components/headers/CorrelationId"}},
            "content": {_JSON: {"schema": relink(info.returns)}},
        }
    }
    for status in sorted({*error_statuses(), *_EXTRA_STATUSES}):
        responses[str(status)] = {"$ref": f"#/components/responses/Error{status}"}
    operation: dict[str, Any] = {
        "operationId": f"{iface.name}_{name}".replace("-", "_"),
        "summary": summary,
        "tags": [iface.name],
        "parameters": [{"$ref": f"#/components/parameters/{key}"} for key in _HEADERS],
        "requestBody": {
            "required": bool(info.required_params),
            "content": {_JSON: {"schema": relink(info.params)}},
        },
        "responses": responses,
    }
    if info.doc:
        operation["description"] = info.doc
    if info.public:  # reachable without a certificate; with the service's token if it has auth
        operation["security"] = [{"bearerAuth": []}] if iface.auth else [{}]
    extensions: dict[str, Any] = {"x-lumi-idempotent": info.idempotent}
    if info.public:
        extensions["x-lumi-public"] = True
    if info.timeout is not None:
        extensions["x-lumi-timeout"] = info.timeout
    return {**operation, **extensions}


def _probe(summary: str, operation_id: str) -> dict[str, Any]:
    status = {"type": "object", "properties": {"status": {"type": "string"}}}
    return {
        "operationId": operation_id,
        "summary": summary,
        "security": [{}],  # probes need no certificate (a kubelet has none)
        "responses": {
            "200": {"description": summary, "content": {_JSON: {"schema": status}}},
            "503": {"description": "Not ready", "content": {_JSON: {"schema": status}}},
        },
    }


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "A Lumi error: the code decides retries; details are free-form.",
        "required": ["code", "message"],
        "properties": {
            "code": {"type": "string", "enum": [c.value for c in StatusCode]},
            "message": {"type": "string"},
            "details": {},
        },
    }


def _error_responses() -> dict[str, Any]:
    responses = {}
    statuses = error_statuses()
    for status in sorted({*statuses, *_EXTRA_STATUSES}):
        codes = statuses.get(status, [_EXTRA_CODES.get(status, "INVALID_ARGUMENT")])
        text = _EXTRA_STATUSES.get(status, " or ".join(codes))
        responses[f"Error{status}"] = {
            "description": text,
            "content": {_JSON: {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    return responses
