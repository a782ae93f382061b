"""Reflection: a ``Service`` class → its :class:`ServiceInterface` plus the compiled validators
the runtime uses to serve it.

Every check on a service definition happens here, once per class, so a bad service fails when
it is loaded with one error naming service, member and cause.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import Any

import pydantic
from pydantic.errors import PydanticUserError
from pydantic_core import CoreConfig, SchemaValidator

from lumi.model.errors import DefinitionError
from lumi.model.interface import EventInfo, MethodInfo, ServiceInterface, SubscriptionInfo
from lumi.model.service import (
    API_ATTR,
    AUTH_ATTR,
    SUBSCRIBE_ATTR,
    ApiOptions,
    EventSpec,
    Service,
    SubscribeOptions,
)
from lumi.model.types import WIRE_CONFIG, check_type, is_sensitive
from lumi.model.wire_validation import wire_validator

_PARAMS_PREFIX = "__lumi_params__"
_RESERVED_FIELD_NAMES = frozenset(dir(pydantic.BaseModel))


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """What the dispatcher needs to serve one method."""

    name: str  # on the wire
    attr: str  # on the class
    is_async: bool
    params: type[pydantic.BaseModel]
    fields: tuple[tuple[str, str], ...]  # (model field, python parameter)
    returns: pydantic.TypeAdapter[Any]
    options: ApiOptions
    validator: SchemaValidator  # JSON arguments → ``params`` (lumi.model.wire_validation)
    returns_model: type | None = None  # the declared return type, when it is a pydantic model


@dataclasses.dataclass(frozen=True)
class SubscriptionSpec:
    attr: str
    is_async: bool
    options: SubscribeOptions
    payload: pydantic.TypeAdapter[Any]
    validator: SchemaValidator  # JSON payload → value (lumi.model.wire_validation)


@dataclasses.dataclass(frozen=True)
class AuthSpec:
    """The service's ``@lumi.auth`` handler."""

    attr: str
    is_async: bool
    accepts_none: bool  # its token parameter is ``str | None``: called for tokenless calls too


@dataclasses.dataclass(frozen=True)
class Reflected:
    cls: type[Service]
    interface: ServiceInterface
    methods: dict[str, MethodSpec]
    events: dict[str, EventSpec[Any]]
    subscriptions: tuple[SubscriptionSpec, ...]
    capabilities: dict[str, type[Service]]  # attribute → service class
    auth: AuthSpec | None = None


_CACHE_ATTR = "__lumi_reflected__"
_BASE64_CONFIG = CoreConfig(ser_json_bytes="base64", val_json_bytes="base64")


def reflect(cls: type) -> Reflected:
    """Reflect ``cls`` (cached on the class)."""
    if not (isinstance(cls, type) and issubclass(cls, Service)) or cls is Service:
        raise DefinitionError(f"{cls!r} is not a lumi.Service subclass")
    cached = cls.__dict__.get(_CACHE_ATTR)
    if isinstance(cached, Reflected):
        return cached
    reflected = _Reflector(cls).run()
    setattr(cls, _CACHE_ATTR, reflected)
    return reflected


def wire_adapter(tp: Any) -> pydantic.TypeAdapter[Any]:
    """A TypeAdapter sending bytes as base64 (models keep their own config)."""
    try:
        return pydantic.TypeAdapter(
            tp, config=pydantic.ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")
        )
    except PydanticUserError:
        return pydantic.TypeAdapter(tp)


class _Reflector:
    def __init__(self, cls: type[Service]) -> None:
        self.cls = cls
        self.where = cls.name

    def run(self) -> Reflected:
        hints = self._class_hints()
        capabilities = {
            attr: tp
            for attr, tp in hints.items()
            if isinstance(tp, type) and issubclass(tp, Service) and tp is not Service
        }
        methods: dict[str, MethodSpec] = {}
        subscriptions: list[SubscriptionSpec] = []
        events: dict[str, EventSpec[Any]] = {}
        auth: AuthSpec | None = None
        for attr in sorted(dir(self.cls)):
            raw = inspect.getattr_static(self.cls, attr)
            if isinstance(raw, EventSpec):
                events[raw.name or attr] = raw
                continue
            func = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
            if hasattr(func, API_ATTR):
                spec = self._method(attr, func, getattr(func, API_ATTR))
                if spec.name in methods:
                    raise DefinitionError(
                        f"{self.where}: two methods are exported as {spec.name!r} "
                        f"({methods[spec.name].attr} and {attr})"
                    )
                methods[spec.name] = spec
            if hasattr(func, SUBSCRIBE_ATTR):
                subscriptions.append(self._subscription(attr, func, getattr(func, SUBSCRIBE_ATTR)))
            if getattr(func, AUTH_ATTR, False):
                if auth is not None:
                    raise DefinitionError(
                        f"{self.where}: two @lumi.auth handlers ({auth.attr} and {attr}); "
                        f"a service has at most one"
                    )
                if hasattr(func, API_ATTR) or hasattr(func, SUBSCRIBE_ATTR):
                    raise DefinitionError(
                        f"{self.where}.{attr}: an @lumi.auth handler cannot also be an @lumi.api "
                        f"method or an event handler"
                    )
                auth = self._auth(attr, func)
        for name, event_spec in events.items():
            model, key = event_spec.model, event_spec.key
            check_type(model, f"{self.where}.{name}: event payload")
            if key is not None and not _has_field(model, key):
                raise DefinitionError(
                    f"{self.where}.{name}: key={key!r} is not a field of "
                    f"{getattr(model, '__name__', model)}"
                )
        iface = self._interface(methods, events, subscriptions, capabilities, auth is not None)
        return Reflected(self.cls, iface, methods, events, tuple(subscriptions), capabilities, auth)

    def _class_hints(self) -> dict[str, Any]:
        try:
            return typing.get_type_hints(self.cls)
        except NameError as exc:
            raise DefinitionError(
                f"{self.where}: cannot resolve annotation {exc.name!r}; import the service class "
                f"it names in the module of {self.cls.__name__}"
            ) from exc

    def _signature(self, attr: str, func: Any) -> tuple[inspect.Signature, dict[str, Any]]:
        where = f"{self.where}.{attr}"
        if not callable(func):
            raise DefinitionError(f"{where}: only methods can be exported, not {func!r}")
        if inspect.isasyncgenfunction(func) or inspect.isgeneratorfunction(func):
            raise DefinitionError(f"{where}: generators cannot be exported; return a list")
        try:
            hints = typing.get_type_hints(func, include_extras=True)
        except NameError as exc:
            raise DefinitionError(f"{where}: cannot resolve annotation {exc.name!r}") from exc
        return inspect.signature(func), hints

    def _method(self, attr: str, func: Any, options: ApiOptions) -> MethodSpec:
        name = options.name or attr
        where = f"{self.where}.{name}"
        signature, hints = self._signature(attr, func)
        fields: dict[str, Any] = {}
        mapping: list[tuple[str, str]] = []
        for index, param in enumerate(signature.parameters.values()):
            if index == 0 and param.name == "self":
                continue
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise DefinitionError(
                    f"{where}: parameter '{param.name}' is *args/**kwargs; "
                    f"declare each parameter by name"
                )
            if param.kind is param.POSITIONAL_ONLY:
                raise DefinitionError(
                    f"{where}: parameter '{param.name}' is positional-only; arguments travel by "
                    f"name, so remove the '/'"
                )
            if param.name not in hints:
                raise DefinitionError(
                    f"{where}: parameter '{param.name}' has no type annotation; "
                    f"annotate it (e.g. {param.name}: str)"
                )
            annotation = hints[param.name]
            check_type(annotation, f"{where}: parameter '{param.name}'")
            default = ... if param.default is param.empty else param.default
            field = param.name
            if field in _RESERVED_FIELD_NAMES or field.startswith("_"):
                field = f"lumi_param_{param.name}"
                fields[field] = (annotation, pydantic.Field(default, alias=param.name))
            else:
                fields[field] = (annotation, default)
            mapping.append((field, param.name))
        if "return" not in hints:
            raise DefinitionError(
                f"{where}: no return annotation; add one (-> None if it returns nothing)"
            )
        check_type(hints["return"], f"{where}: return value")
        params = pydantic.create_model(
            f"{_PARAMS_PREFIX}{self.cls.name}__{name}",
            __config__=pydantic.ConfigDict(**WIRE_CONFIG, populate_by_name=True),
            **fields,
        )
        return MethodSpec(
            name=name,
            attr=attr,
            is_async=inspect.iscoroutinefunction(func),
            params=params,
            fields=tuple(mapping),
            returns=wire_adapter(hints["return"]),
            options=options,
            validator=wire_validator(params.__pydantic_core_schema__, keep_extras=True),
            returns_model=_model_class(hints["return"]),
        )

    def _auth(self, attr: str, func: Any) -> AuthSpec:
        where = f"{self.where}.{attr}"
        signature, hints = self._signature(attr, func)
        params = [p for p in signature.parameters.values() if p.name != "self"]
        if len(params) != 1 or params[0].kind in (params[0].VAR_POSITIONAL, params[0].VAR_KEYWORD):
            raise DefinitionError(
                f"{where}: an @lumi.auth handler takes exactly one parameter (the bearer token), "
                f"not {len(params)}"
            )
        annotation = hints.get(params[0].name, str)
        accepts_none = annotation is not str
        if annotation not in (str, str | None, typing.Optional[str]):  # noqa: UP045
            raise DefinitionError(
                f"{where}: the token parameter '{params[0].name}' is a str (or str | None to be "
                f"called for calls without a token), not {annotation!r}"
            )
        return AuthSpec(attr, inspect.iscoroutinefunction(func), accepts_none)

    def _subscription(self, attr: str, func: Any, options: SubscribeOptions) -> SubscriptionSpec:
        where = f"{self.where}.{attr}"
        signature, hints = self._signature(attr, func)
        params = [p for p in signature.parameters.values() if p.name != "self"]
        if len(params) != 1:
            raise DefinitionError(
                f"{where}: an event handler takes exactly one parameter (the event payload), "
                f"not {len(params)}"
            )
        payload_type = hints.get(params[0].name)
        if payload_type is None:
            if options.model is None:
                raise DefinitionError(
                    f"{where}: parameter '{params[0].name}' has no type annotation; annotate it "
                    f"with the event's payload model"
                )
            payload_type = options.model
        check_type(payload_type, f"{where}: parameter '{params[0].name}'")
        payload = wire_adapter(payload_type)
        return SubscriptionSpec(
            attr=attr,
            is_async=inspect.iscoroutinefunction(func),
            options=options,
            payload=payload,
            validator=wire_validator(payload.core_schema, _BASE64_CONFIG),
        )

    def _interface(
        self,
        methods: dict[str, MethodSpec],
        events: dict[str, EventSpec[Any]],
        subscriptions: list[SubscriptionSpec],
        capabilities: dict[str, type[Service]],
        auth: bool = False,
    ) -> ServiceInterface:
        inputs: list[tuple[tuple[str, str], Any, pydantic.TypeAdapter[Any]]] = []
        for name, spec in methods.items():
            inputs.append((("params", name), "validation", pydantic.TypeAdapter(spec.params)))
            # Validation mode for results too: it is what a client checks a result against,
            # and one mode keeps model names free of pydantic's -Input/-Output suffixes.
            inputs.append((("returns", name), "validation", spec.returns))
        for name, event_spec in events.items():
            inputs.append((("event", name), "validation", wire_adapter(event_spec.model)))
        schemas, top = pydantic.TypeAdapter.json_schemas(inputs, ref_template="#/$defs/{model}")
        defs: dict[str, Any] = dict(top.get("$defs", {}))
        method_infos: dict[str, MethodInfo] = {}
        for name, spec in methods.items():
            params = schemas[(("params", name), "validation")]
            params = defs.pop(params["$ref"].rsplit("/", 1)[1]) if "$ref" in params else params
            params = {k: v for k, v in params.items() if k != "title"}
            func = inspect.getattr_static(self.cls, spec.attr)
            hints = typing.get_type_hints(func, include_extras=True)
            method_infos[name] = MethodInfo(
                doc=inspect.getdoc(func) or "",
                params=params,
                param_order=[p for _, p in spec.fields],
                returns=schemas[(("returns", name), "validation")],
                idempotent=spec.options.idempotent,
                timeout=spec.options.timeout,
                retry=spec.options.retry,
                sensitive=[p for _, p in spec.fields if is_sensitive(hints.get(p))],
                public=spec.options.public,
            )
        event_infos = {
            name: EventInfo(
                doc=spec.doc, payload=schemas[(("event", name), "validation")], key=spec.key
            )
            for name, spec in events.items()
        }
        subscription_infos = sorted(
            (
                SubscriptionInfo(
                    service=s.options.service,
                    event=s.options.event,
                    handler=s.attr,
                    max_attempts=s.options.max_attempts,
                    start=s.options.start,
                )
                for s in subscriptions
            ),
            key=lambda s: (s.service, s.event, s.handler),
        )
        doc = inspect.getdoc(self.cls) or ""
        if doc == inspect.getdoc(Service):
            doc = ""
        return ServiceInterface(
            name=self.cls.name,
            version=self.cls.version,
            doc=doc,
            methods=method_infos,
            events=event_infos,
            subscriptions=subscription_infos,
            requires=sorted({svc.name for svc in capabilities.values()}),
            defs=defs,
            auth=auth,
        )


def _model_class(tp: Any) -> type | None:
    if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel):
        return tp
    return None


def _has_field(model: Any, name: str) -> bool:
    if isinstance(model, type) and issubclass(model, pydantic.BaseModel):
        return name in model.model_fields
    if dataclasses.is_dataclass(model):
        return any(f.name == name for f in dataclasses.fields(model))
    return False
