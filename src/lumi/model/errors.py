"""Lumi's errors.

Two families, never mixed:

* Errors that travel on the wire (a call's outcome), all with a :class:`StatusCode`::

    LumiError                      code            HTTP
    ├── Cancelled                  CANCELLED        499
    ├── Unknown                    UNKNOWN          500
    ├── InvalidArgument            INVALID_ARGUMENT 400
    ├── DeadlineExceeded           DEADLINE_EXCEEDED 504
    ├── NotFound                   NOT_FOUND        404
    ├── AlreadyExists              ALREADY_EXISTS   409
    ├── PermissionDenied           PERMISSION_DENIED 403
    ├── ResourceExhausted          RESOURCE_EXHAUSTED 429
    ├── FailedPrecondition         FAILED_PRECONDITION 409
    ├── Aborted                    ABORTED          409
    ├── OutOfRange                 OUT_OF_RANGE     400
    ├── Unimplemented              UNIMPLEMENTED    501
    ├── Internal                   INTERNAL         500
    ├── Unavailable                UNAVAILABLE      503
    │   ├── NotSent                (local: the connection could not be made; nothing was sent)
    │   └── Lost                   (local: the connection broke after sending; outcome unknown)
    ├── DataLoss                   DATA_LOSS        500
    └── Unauthenticated            UNAUTHENTICATED  401

  A handler raises one of them; the caller receives the same type, rebuilt from data (code,
  message, details) — never from a pickled object and never with the callee's stack trace.

* Errors about the program itself, raised locally and never sent:

    DefinitionError (TypeError)    a service class that Lumi cannot serve (bad type, bad decorator)
    AppError                       an app that cannot be assembled (cycle, missing capability)
    ConfigError                    a bad lumi.toml: names the file, the key and what would be valid
"""

from __future__ import annotations

import enum
import json
from typing import Any, ClassVar


class StatusCode(enum.StrEnum):
    """The fixed set of call outcomes, modelled on gRPC status codes."""

    CANCELLED = "CANCELLED"
    UNKNOWN = "UNKNOWN"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    ABORTED = "ABORTED"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    INTERNAL = "INTERNAL"
    UNAVAILABLE = "UNAVAILABLE"
    DATA_LOSS = "DATA_LOSS"
    UNAUTHENTICATED = "UNAUTHENTICATED"

    @property
    def http_status(self) -> int:
        return _HTTP_STATUS[self]

    @property
    def grpc_value(self) -> int:
        """The numeric gRPC status code (OK is 0, so CANCELLED is 1 ...)."""
        return list(StatusCode).index(self) + 1


# The mapping used by Google APIs (google.rpc.Code → HTTP), but for FAILED_PRECONDITION: 409
# Conflict rather than 400, so that 400 always means "this request is malformed" (what the
# published schema rejects) and a valid request refused for the state of the system is told
# apart by plain HTTP clients and schema-driven fuzzers alike.
_HTTP_STATUS: dict[StatusCode, int] = {
    StatusCode.CANCELLED: 499,
    StatusCode.UNKNOWN: 500,
    StatusCode.INVALID_ARGUMENT: 400,
    StatusCode.DEADLINE_EXCEEDED: 504,
    StatusCode.NOT_FOUND: 404,
    StatusCode.ALREADY_EXISTS: 409,
    StatusCode.PERMISSION_DENIED: 403,
    StatusCode.RESOURCE_EXHAUSTED: 429,
    StatusCode.FAILED_PRECONDITION: 409,
    StatusCode.ABORTED: 409,
    StatusCode.OUT_OF_RANGE: 400,
    StatusCode.UNIMPLEMENTED: 501,
    StatusCode.INTERNAL: 500,
    StatusCode.UNAVAILABLE: 503,
    StatusCode.DATA_LOSS: 500,
    StatusCode.UNAUTHENTICATED: 401,
}


class LumiError(Exception):
    """The root of every error that crosses the wire."""

    code: ClassVar[StatusCode] = StatusCode.UNKNOWN
    _by_code: ClassVar[dict[StatusCode, type[LumiError]]] = {}

    def __init__(self, message: str = "", details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Only Lumi's own classes are registered, so a user subclass can never change
        # which type a remote error is rebuilt into.
        if cls.__module__ == __name__:
            LumiError._by_code[cls.code] = cls

    def __str__(self) -> str:
        return f"{self.code.value}: {self.message}" if self.message else self.code.value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"

    def to_wire(self) -> dict[str, Any]:
        """The error as data: ``{"code", "message", "details"}``."""
        return {"code": self.code.value, "message": self.message, "details": self.details}

    @staticmethod
    def from_wire(data: Any) -> LumiError:
        """Rebuild an error from its data; anything malformed becomes UNKNOWN."""
        if not isinstance(data, dict):
            return Unknown(f"malformed error: {data!r}"[:500])
        try:
            code = StatusCode(str(data.get("code")))
        except ValueError:
            code = StatusCode.UNKNOWN
        cls = LumiError._by_code.get(code, Unknown)
        return cls(str(data.get("message", "")), data.get("details"))

    @staticmethod
    def from_http(status: int, body: bytes) -> LumiError:
        """The error an HTTP answer other than 200 carries: its JSON error body, or (a proxy's
        page, say) the error of its status with the start of the body."""
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if isinstance(data, dict) and "code" in data:
            return LumiError.from_wire(data)
        code = next((c for c in StatusCode if c.http_status == status), StatusCode.UNKNOWN)
        return LumiError.for_code(code)(f"HTTP {status}: {body[:200].decode('utf-8', 'replace')}")

    @staticmethod
    def for_code(code: StatusCode | str) -> type[LumiError]:
        """The error class for a status code."""
        return LumiError._by_code.get(StatusCode(code), Unknown)


class Cancelled(LumiError):
    code = StatusCode.CANCELLED


class Unknown(LumiError):
    code = StatusCode.UNKNOWN


class InvalidArgument(LumiError):
    code = StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(LumiError):
    code = StatusCode.DEADLINE_EXCEEDED


class NotFound(LumiError):
    code = StatusCode.NOT_FOUND


class AlreadyExists(LumiError):
    code = StatusCode.ALREADY_EXISTS


class PermissionDenied(LumiError):
    code = StatusCode.PERMISSION_DENIED


class ResourceExhausted(LumiError):
    code = StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(LumiError):
    code = StatusCode.FAILED_PRECONDITION


class Aborted(LumiError):
    code = StatusCode.ABORTED


class OutOfRange(LumiError):
    code = StatusCode.OUT_OF_RANGE


class Unimplemented(LumiError):
    code = StatusCode.UNIMPLEMENTED


class Internal(LumiError):
    code = StatusCode.INTERNAL


class Unavailable(LumiError):
    code = StatusCode.UNAVAILABLE


class NotSent(Unavailable):
    """Raised by a channel when the call never left this process (the connection could not be
    made): any method may safely go to another replica. Never sent on the wire; the caller sees
    UNAVAILABLE."""


class Lost(Unavailable):
    """Raised by a channel when the connection broke after the call was sent: it may have run,
    so only an idempotent method may be retried (the resilience layer's rule). A callee's own
    UNAVAILABLE answer is neither this nor :class:`NotSent`. Never sent on the wire."""


class DataLoss(LumiError):
    code = StatusCode.DATA_LOSS


class Unauthenticated(LumiError):
    code = StatusCode.UNAUTHENTICATED


class DefinitionError(TypeError):
    """A service class that Lumi cannot serve; the message names service, member and cause."""


class AppError(Exception):
    """An app that cannot be assembled: a capability cycle, a missing service, ..."""


class ConfigError(Exception):
    """A bad configuration value; the message names the file, the key and what would be valid."""
