"""Lumi: write a service once as a typed Python class; run it anywhere by configuration.

The public API. Attributes are imported on first use, so ``import lumi`` (and so every
``import lumi.<module>``) stays light: no transport, broker, OpenTelemetry or structlog is
loaded until something asks for it.
"""

import importlib as _importlib
from typing import TYPE_CHECKING
from typing import Any as _Any

if TYPE_CHECKING:
    from lumi.config import AppConfig, load_config
    from lumi.model.context import CallContext, Metadata, User, context
    from lumi.model.errors import (
        Aborted,
        AlreadyExists,
        AppError,
        Cancelled,
        ConfigError,
        DataLoss,
        DeadlineExceeded,
        DefinitionError,
        FailedPrecondition,
        Internal,
        InvalidArgument,
        LumiError,
        NotFound,
        OutOfRange,
        PermissionDenied,
        ResourceExhausted,
        StatusCode,
        Unauthenticated,
        Unavailable,
        Unimplemented,
        Unknown,
    )
    from lumi.model.hints import Retry
    from lumi.model.interface import (
        EventInfo,
        MethodInfo,
        ServiceInterface,
        SubscriptionInfo,
        interface,
    )
    from lumi.model.service import Service, api, auth, event, subscribe
    from lumi.model.types import Sensitive
    from lumi.pipeline.client import Client
    from lumi.pipeline.consumer_dedupe import idempotent_consumer
    from lumi.runtime_services.observability.logs import get_logger
    from lumi.runtime_services.resilience.resource import Resource, connect, resource
    from lumi.runtimes.app import App
    from lumi.security.jwt import Jwt

del TYPE_CHECKING  # not a public name

__version__ = "0.1.0"

_ATTRIBUTES: dict[str, str] = {
    "Aborted": "lumi.model.errors",
    "AlreadyExists": "lumi.model.errors",
    "App": "lumi.runtimes.app",
    "AppConfig": "lumi.config",
    "AppError": "lumi.model.errors",
    "CallContext": "lumi.model.context",
    "Cancelled": "lumi.model.errors",
    "Client": "lumi.pipeline.client",
    "ConfigError": "lumi.model.errors",
    "DataLoss": "lumi.model.errors",
    "DeadlineExceeded": "lumi.model.errors",
    "DefinitionError": "lumi.model.errors",
    "EventInfo": "lumi.model.interface",
    "FailedPrecondition": "lumi.model.errors",
    "Internal": "lumi.model.errors",
    "InvalidArgument": "lumi.model.errors",
    "Jwt": "lumi.security.jwt",
    "LumiError": "lumi.model.errors",
    "Metadata": "lumi.model.context",
    "MethodInfo": "lumi.model.interface",
    "NotFound": "lumi.model.errors",
    "OutOfRange": "lumi.model.errors",
    "PermissionDenied": "lumi.model.errors",
    "Resource": "lumi.runtime_services.resilience.resource",
    "ResourceExhausted": "lumi.model.errors",
    "Retry": "lumi.model.hints",
    "Sensitive": "lumi.model.types",
    "Service": "lumi.model.service",
    "ServiceInterface": "lumi.model.interface",
    "StatusCode": "lumi.model.errors",
    "SubscriptionInfo": "lumi.model.interface",
    "Unauthenticated": "lumi.model.errors",
    "Unavailable": "lumi.model.errors",
    "Unimplemented": "lumi.model.errors",
    "Unknown": "lumi.model.errors",
    "User": "lumi.model.context",
    "api": "lumi.model.service",
    "auth": "lumi.model.service",
    "connect": "lumi.runtime_services.resilience.resource",
    "context": "lumi.model.context",
    "event": "lumi.model.service",
    "get_logger": "lumi.runtime_services.observability.logs",
    "idempotent_consumer": "lumi.pipeline.consumer_dedupe",
    "interface": "lumi.model.interface",
    "load_config": "lumi.config",
    "resource": "lumi.runtime_services.resilience.resource",
    "subscribe": "lumi.model.service",
}

__all__ = [
    "Aborted",
    "AlreadyExists",
    "App",
    "AppConfig",
    "AppError",
    "CallContext",
    "Cancelled",
    "Client",
    "ConfigError",
    "DataLoss",
    "DeadlineExceeded",
    "DefinitionError",
    "EventInfo",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "Jwt",
    "LumiError",
    "Metadata",
    "MethodInfo",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "Resource",
    "ResourceExhausted",
    "Retry",
    "Sensitive",
    "Service",
    "ServiceInterface",
    "StatusCode",
    "SubscriptionInfo",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
    "User",
    "__version__",
    "api",
    "auth",
    "connect",
    "context",
    "event",
    "get_logger",
    "idempotent_consumer",
    "interface",
    "load_config",
    "resource",
    "subscribe",
]


def __getattr__(name: str) -> _Any:
    if name == "testing":  # the testing kit, as `lumi.testing` after a bare `import lumi`
        return _importlib.import_module("lumi.testing")
    module = _ATTRIBUTES.get(name)
    if module is None:
        raise AttributeError(f"module 'lumi' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_ATTRIBUTES})
