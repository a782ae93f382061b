"""The service interface: the hub value every other part of Lumi reads.

A :class:`ServiceInterface` is plain, language-neutral data — name, version, docs, methods with
parameter/return JSON Schemas, events with payload schemas, subscriptions and required
capabilities. It serializes to canonical JSON (sorted keys, no insignificant whitespace), so the
same interface always has the same text and the same :attr:`~ServiceInterface.fingerprint`.
Schemas refer to shared model definitions with ``{"$ref": "#/$defs/Name"}``; use
:meth:`~ServiceInterface.standalone` for a self-contained schema.
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

import pydantic

from lumi.model.hints import Retry

FORMAT = 1
"""The version of the interface JSON format itself."""

_FROZEN = pydantic.ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class MethodInfo(pydantic.BaseModel):
    """One RPC method: ``params`` is the JSON Schema of the arguments object."""

    model_config = _FROZEN

    doc: str = ""
    params: dict[str, Any]
    param_order: list[str] = pydantic.Field(default_factory=list)
    returns: dict[str, Any]
    idempotent: bool = False
    timeout: float | None = None
    retry: Retry | None = None
    sensitive: list[str] = pydantic.Field(default_factory=list)
    public: bool = False  # reachable without a service certificate (@lumi.api(public=True))

    @pydantic.model_serializer(mode="wrap")
    def _omit_private(self, handler: pydantic.SerializerFunctionWrapHandler) -> Any:
        # Written only when set, so the interfaces (and fingerprints) of services that use no
        # security feature are what they were before it existed.
        data = handler(self)
        if not self.public:
            data.pop("public", None)
        return data

    @property
    def param_names(self) -> list[str]:
        """Parameter names in declaration order (JSON object keys are unordered)."""
        return self.param_order or sorted(self.params.get("properties", {}))

    @property
    def required_params(self) -> list[str]:
        return list(self.params.get("required", []))


class EventInfo(pydantic.BaseModel):
    """One exported event; its topic is ``<service>.<event>``."""

    model_config = _FROZEN

    doc: str = ""
    payload: dict[str, Any]
    key: str | None = None


class SubscriptionInfo(pydantic.BaseModel):
    """A handler of another service's event; the consumer group is the subscribing service."""

    model_config = _FROZEN

    service: str
    event: str
    handler: str
    max_attempts: int = 5
    start: str = "earliest"

    @property
    def topic(self) -> str:
        return f"{self.service}.{self.event}"


class ServiceInterface(pydantic.BaseModel):
    """The interface of one service. Build it with :func:`lumi.model.interface`."""

    model_config = _FROZEN

    format: int = FORMAT
    name: str
    version: str = "0.1.0"
    doc: str = ""
    methods: dict[str, MethodInfo] = pydantic.Field(default_factory=dict)
    events: dict[str, EventInfo] = pydantic.Field(default_factory=dict)
    subscriptions: list[SubscriptionInfo] = pydantic.Field(default_factory=list)
    requires: list[str] = pydantic.Field(default_factory=list)
    defs: dict[str, dict[str, Any]] = pydantic.Field(default_factory=dict, alias="$defs")
    auth: bool = False  # it verifies bearer tokens for its public methods (@lumi.auth)

    @pydantic.model_serializer(mode="wrap")
    def _omit_no_auth(self, handler: pydantic.SerializerFunctionWrapHandler) -> Any:
        data = handler(self)  # written only when set, like MethodInfo.public
        if not self.auth:
            data.pop("auth", None)
        return data

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def to_json(self, *, indent: int | None = None) -> str:
        """Canonical JSON: the same interface always gives the same text."""
        return canonical_json(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str | bytes) -> ServiceInterface:
        return cls.model_validate_json(text)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServiceInterface:
        return cls.model_validate(data)

    @functools.cached_property
    def fingerprint(self) -> str:
        """``sha256:<hex>`` of the canonical JSON; any change to the interface changes it."""
        return "sha256:" + hashlib.sha256(self.to_json().encode()).hexdigest()

    def topic(self, event: str) -> str:
        return f"{self.name}.{event}"

    def standalone(self, fragment: dict[str, Any]) -> dict[str, Any]:
        """``fragment`` made self-contained by attaching the definitions it may refer to."""
        if not self.defs:
            return dict(fragment)
        return {**fragment, "$defs": self.defs}

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ServiceInterface):
            return NotImplemented
        return self.to_json() == other.to_json()


def canonical_json(data: Any, *, indent: int | None = None) -> str:
    separators = (",", ": ") if indent else (",", ":")
    return json.dumps(
        data, sort_keys=True, separators=separators, ensure_ascii=False, indent=indent
    )


def interface(service: type) -> ServiceInterface:
    """Reflect a ``lumi.Service`` class into its :class:`ServiceInterface` (cached)."""
    from lumi.model.reflect import reflect

    return reflect(service).interface
