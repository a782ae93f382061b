"""Lumi: write a service once as a typed Python class; run it anywhere by configuration."""

from lumi.client import Client
from lumi.config import AppConfig, load_config
from lumi.context import CallContext, Metadata, context
from lumi.dedupe import idempotent_consumer
from lumi.errors import (
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
from lumi.interface import (
    EventInfo,
    MethodInfo,
    ServiceInterface,
    SubscriptionInfo,
    interface,
)
from lumi.policy import Retry
from lumi.resilience.resource import Resource, connect, resource
from lumi.runtimes.inproc import App
from lumi.service import Service, api, event, subscribe
from lumi.types import Sensitive

__version__ = "0.1.0"

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
    "__version__",
    "api",
    "connect",
    "context",
    "event",
    "idempotent_consumer",
    "interface",
    "load_config",
    "resource",
    "subscribe",
]
