"""The dispatcher: routes a :class:`Call` to the service method or event handler it names.

Arguments arrive as JSON bytes and are validated against the method's parameter model; the
result leaves as JSON bytes checked against the declared return type. Every exception becomes a
:class:`LumiError`: unknown names → NOT_FOUND (with what exists), bad arguments →
INVALID_ARGUMENT (with pydantic's details), anything unexpected in user code → INTERNAL, with the
stack trace in the log and never on the wire. Transports and brokers only ever call
:meth:`Dispatcher.handle`.
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import json
import logging
import time
from collections.abc import Iterable
from typing import Any

import pydantic
from pydantic_core import PydanticSerializationError

from lumi.model.context import CallContext, reset_context, set_context
from lumi.model.errors import DeadlineExceeded, Internal, InvalidArgument, LumiError, NotFound
from lumi.model.redact import redact
from lumi.model.reflect import MethodSpec, Reflected, SubscriptionSpec, reflect
from lumi.model.service import Service
from lumi.pipeline import Call, Handler, Middleware, compose

log = logging.getLogger("lumi.dispatch")

_EMPTY = b""
_NONE: frozenset[str] = frozenset()


class _Hosted:
    __slots__ = ("handlers", "methods", "reflected", "sensitive", "service")

    def __init__(self, service: Service, reflected: Reflected) -> None:
        self.service = service
        self.reflected = reflected
        self.methods = reflected.methods
        self.handlers: dict[str, SubscriptionSpec] = {s.attr: s for s in reflected.subscriptions}
        self.sensitive = {
            name: frozenset(info.sensitive)
            for name, info in reflected.interface.methods.items()
            if info.sensitive
        }


class Dispatcher:
    """Serves the calls for the services hosted in this process."""

    def __init__(self, middlewares: Iterable[Middleware] = ()) -> None:
        self._hosted: dict[str, _Hosted] = {}
        self._middlewares = list(middlewares)
        self.handle: Handler = compose(self._dispatch, self._middlewares)

    def add(self, service: Service) -> None:
        reflected = reflect(type(service))
        self._hosted[reflected.interface.name] = _Hosted(service, reflected)

    @property
    def services(self) -> dict[str, Service]:
        return {name: hosted.service for name, hosted in self._hosted.items()}

    def reflected(self, name: str) -> Reflected:
        return self._hosted[name].reflected

    async def _dispatch(self, call: Call) -> bytes:
        hosted = self._hosted.get(call.service)
        if hosted is None:
            raise NotFound(
                f"no service {call.service!r} here{_suggest(call.service, self._hosted)}",
                {"services": sorted(self._hosted)},
            )
        ctx = CallContext(
            service=call.service,
            method=call.method,
            metadata=call.metadata,
            kind=call.kind,
            event_id=call.event_id,
            attempt=call.attempt,
            topic=call.topic,
            sensitive=hosted.sensitive.get(call.method, _NONE),
        )
        token = set_context(ctx)
        try:
            if call.kind == "event":
                return await self._deliver(hosted, call)
            return await self._invoke(hosted, call)
        finally:
            reset_context(token)

    async def _invoke(self, hosted: _Hosted, call: Call) -> bytes:
        method = hosted.methods.get(call.method)
        if method is None:
            raise NotFound(
                f"{call.service} has no method {call.method!r}"
                f"{_suggest(call.method, hosted.methods)}; methods: "
                f"{', '.join(sorted(hosted.methods)) or '(none)'}",
                {"methods": sorted(hosted.methods)},
            )
        try:
            params = method.params.model_validate_json(call.body or b"{}")
        except pydantic.ValidationError as exc:
            raise _invalid(f"invalid arguments for {call.service}.{call.method}", exc) from None
        values = params.__dict__
        kwargs = {param: values[field] for field, param in method.fields}
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s.%s called",
                call.service,
                call.method,
                extra={"arguments": redact(kwargs, hosted.sensitive.get(call.method, _NONE))},
            )
        func = getattr(hosted.service, method.attr)
        result = await self._run(func, kwargs, method.is_async, call, method)
        if method.returns_model is not None and type(result) is method.returns_model:
            # An instance of the declared model was validated when it was built: skip the
            # (2-3x slower) type-checking serialization below.
            return method.returns.dump_json(result)
        try:
            return method.returns.dump_json(result, warnings="error")
        except (PydanticSerializationError, ValueError, TypeError) as exc:
            log.error(
                "%s.%s returned a value that does not match its declared return type: %s",
                call.service,
                call.method,
                exc,
            )
            raise Internal(
                f"{call.service}.{call.method} returned a value that does not match its "
                f"declared return type"
            ) from None

    async def _deliver(self, hosted: _Hosted, call: Call) -> bytes:
        handler = hosted.handlers.get(call.method)
        if handler is None:
            raise NotFound(f"{call.service} has no event handler {call.method!r}")
        try:
            payload = handler.payload.validate_json(call.body)
        except pydantic.ValidationError as exc:
            raise _invalid(f"invalid payload for {call.service}.{call.method}", exc) from None
        func = getattr(hosted.service, handler.attr)
        await self._run(func, (payload,), handler.is_async, call, None)
        return _EMPTY

    async def _run(
        self,
        func: Any,
        args: dict[str, Any] | tuple[Any, ...],
        is_async: bool,
        call: Call,
        method: MethodSpec | None,
    ) -> Any:
        kwargs = args if isinstance(args, dict) else {}
        positional = args if isinstance(args, tuple) else ()
        timeout = method.options.timeout if method is not None else None
        deadline = call.metadata.deadline
        if timeout is not None:
            local = time.time() + timeout
            deadline = local if deadline is None else min(deadline, local)
        try:
            if deadline is None:
                if is_async:
                    return await func(*positional, **kwargs)
                return await asyncio.to_thread(functools.partial(func, *positional, **kwargs))
            remaining = deadline - time.time()
            if remaining <= 0:
                raise DeadlineExceeded(f"deadline passed before {call.service}.{call.method} ran")
            async with asyncio.timeout(remaining):
                if is_async:
                    return await func(*positional, **kwargs)
                return await asyncio.to_thread(functools.partial(func, *positional, **kwargs))
        except LumiError:
            raise
        except TimeoutError:
            if deadline is not None and time.time() >= deadline - 0.001:
                raise DeadlineExceeded(
                    f"{call.service}.{call.method} did not finish before its deadline"
                ) from None
            raise _internal(call) from None
        except Exception:
            raise _internal(call) from None


def _internal(call: Call) -> Internal:
    """Log the stack of the exception being handled; return the error for the wire."""
    import sys

    exc = sys.exc_info()[1]
    log.error("%s.%s raised an unexpected error", call.service, call.method, exc_info=exc)
    return Internal(f"{type(exc).__name__}: {exc}")


def _invalid(prefix: str, exc: pydantic.ValidationError) -> InvalidArgument:
    details = json.loads(exc.json(include_url=False, include_context=False, include_input=False))
    parts = []
    for error in details:
        where = ".".join(str(p) for p in error.get("loc", ())) or "(arguments)"
        parts.append(f"{where}: {error.get('msg')}")
    return InvalidArgument(f"{prefix}: {'; '.join(parts)}", details)


def _suggest(name: str, known: Iterable[str]) -> str:
    match = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""
