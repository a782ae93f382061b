"""The dispatcher: routes a :class:`Call` to the service method or event handler it names.

Arguments arrive as JSON bytes and are validated — strictly, by default, and at the cost of
parsing them (:mod:`lumi.model.wire_validation`) — against the method's parameter model; the
result leaves as JSON bytes checked against the declared return type. Every exception becomes a
:class:`LumiError`: unknown names → NOT_FOUND (with what exists), bad arguments →
INVALID_ARGUMENT (with a bounded list of what was wrong, never the input echoed), anything
unexpected in user code → INTERNAL with a generic message and an error id; the stack trace and
the exception's text go to the log under that id, and to the caller only when
``expose_errors`` is set. Sync methods run on the service's bounded
:class:`~lumi.pipeline.threads.ThreadPool`. Transports and brokers only ever call
:meth:`Dispatcher.handle`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Iterable
from typing import Any

import pydantic
from pydantic_core import PydanticSerializationError

from lumi.model.context import CallContext, new_id, reset_context, set_context
from lumi.model.errors import DeadlineExceeded, Internal, InvalidArgument, LumiError, NotFound
from lumi.model.redact import redact
from lumi.model.reflect import MethodSpec, Reflected, SubscriptionSpec, reflect
from lumi.model.service import Service
from lumi.model.suggest import close_matches
from lumi.model.wire_validation import extras_message
from lumi.pipeline import Call, Handler, Middleware, compose
from lumi.pipeline.call import bound
from lumi.pipeline.deadlines import until
from lumi.pipeline.edge import excerpt
from lumi.pipeline.threads import DEFAULT_THREADS, ThreadPool

log = logging.getLogger("lumi.dispatch")

_EMPTY = b""
_NONE: frozenset[str] = frozenset()
MAX_ERRORS = 10  # validation errors reported per call (the message says how many more)


@dataclasses.dataclass(frozen=True)
class DispatchSettings:
    """How one hosted service is served (``defaults.*`` / ``services.X.*`` in config)."""

    strict: bool = True  # validate arguments as the published schema says: "5" is no integer
    threads: int = DEFAULT_THREADS  # threads for its sync methods (as many more may wait)
    expose_errors: bool = False  # put an unexpected exception's text in the INTERNAL message


class UnknownTarget(NotFound):
    """NOT_FOUND for a service or method that is not here: the name came from the caller, so
    observers must not use it as a metric label."""


class _Hosted:
    __slots__ = (
        "handlers",
        "methods",
        "plain",
        "pool",
        "reflected",
        "sensitive",
        "service",
        "settings",
    )

    def __init__(self, service: Service, reflected: Reflected, settings: DispatchSettings) -> None:
        self.service = service
        self.reflected = reflected
        self.settings = settings
        self.methods = reflected.methods
        self.handlers: dict[str, SubscriptionSpec] = {s.attr: s for s in reflected.subscriptions}
        self.sensitive = {
            name: frozenset(info.sensitive)
            for name, info in reflected.interface.methods.items()
            if info.sensitive
        }
        self.pool = ThreadPool(reflected.interface.name, settings.threads)
        # methods whose argument model's fields are exactly their parameters, by name
        self.plain = frozenset(
            name
            for name, spec in reflected.methods.items()
            if all(field == param for field, param in spec.fields)
            and set(spec.params.model_fields) == {field for field, _ in spec.fields}
        )


class Dispatcher:
    """Serves the calls for the services hosted in this process.

    ``middlewares`` wrap every call (outermost first); ``guards`` wrap only the running of a
    method, after its arguments validated — where a cache may answer instead (idempotency), so
    a call it answers was a valid one.
    """

    def __init__(
        self, middlewares: Iterable[Middleware] = (), *, guards: Iterable[Middleware] = ()
    ) -> None:
        self._hosted: dict[str, _Hosted] = {}
        self._middlewares = list(middlewares)
        self._guards = [bound(guard) for guard in guards]
        self.handle: Handler = compose(self._dispatch, self._middlewares)

    def add(self, service: Service, settings: DispatchSettings | None = None) -> None:
        reflected = reflect(type(service))
        hosted = _Hosted(service, reflected, settings or DispatchSettings())
        self._hosted[reflected.interface.name] = hosted

    def close(self) -> None:
        """Release the services' thread pools."""
        for hosted in self._hosted.values():
            hosted.pool.shutdown()

    @property
    def services(self) -> dict[str, Service]:
        return {name: hosted.service for name, hosted in self._hosted.items()}

    def reflected(self, name: str) -> Reflected:
        return self._hosted[name].reflected

    async def _dispatch(self, call: Call) -> bytes:
        hosted = self._hosted.get(call.service)
        if hosted is None:
            raise UnknownTarget(
                f"no service {excerpt(call.service)!r} here{_suggest(call.service, self._hosted)}",
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
            raise UnknownTarget(
                f"{call.service} has no method {excerpt(call.method)!r}"
                f"{_suggest(call.method, hosted.methods)}; methods: "
                f"{', '.join(sorted(hosted.methods)) or '(none)'}",
                {"methods": sorted(hosted.methods)},
            )
        try:
            params = method.validator.validate_json(
                call.body or b"{}", strict=hosted.settings.strict
            )
        except pydantic.ValidationError as exc:
            raise _invalid(f"invalid arguments for {call.service}.{call.method}", exc) from None
        unknown = extras_message(params.__pydantic_extra__)
        if unknown is not None:
            raise InvalidArgument(
                f"invalid arguments for {call.service}.{call.method}: {unknown}",
                [{"loc": [], "msg": unknown, "type": "extra_forbidden"}],
            )
        values = params.__dict__
        # Fields named as their parameters (the usual case): the model's own dict, which the
        # call copies into the method's keywords anyway.
        kwargs = (
            values
            if method.name in hosted.plain
            else {param: values[field] for field, param in method.fields}
        )
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s.%s called",
                call.service,
                call.method,
                extra={"arguments": redact(kwargs, hosted.sensitive.get(call.method, _NONE))},
            )
        guards = self._guards
        if not guards:
            return await self._execute(hosted, method, kwargs, call)
        handler: Handler = functools.partial(self._execute, hosted, method, kwargs)
        # The outermost guard is called here, not through one more partial (usually the only
        # one: the idempotency cache).
        for guard in guards[:0:-1]:
            handler = functools.partial(guard, next_handler=handler)
        return await guards[0](call, next_handler=handler)

    async def _execute(
        self, hosted: _Hosted, method: MethodSpec, kwargs: dict[str, Any], call: Call
    ) -> bytes:
        func = getattr(hosted.service, method.attr)
        result = await self._run(func, kwargs, method.is_async, call, method, hosted)
        if method.returns_model is not None and type(result) is method.returns_model:
            # An instance of the declared model was validated when it was built: skip the
            # (2-3x slower) type-checking serialization below.
            return method.returns.serializer.to_json(result)
        try:
            # (the serializer itself: TypeAdapter.dump_json passes it sixteen keywords)
            return method.returns.serializer.to_json(result, warnings="error")
        except (PydanticSerializationError, ValueError, TypeError) as exc:
            error_id = new_id()
            log.error(
                "%s.%s returned a value that does not match its declared return type "
                "(error id %s): %s",
                call.service,
                call.method,
                error_id,
                exc,
                extra={"error_id": error_id},
            )
            raise Internal(
                f"{call.service}.{call.method} returned a value that does not match its "
                f"declared return type (error id {error_id})",
                {"error_id": error_id},
            ) from None

    async def _deliver(self, hosted: _Hosted, call: Call) -> bytes:
        handler = hosted.handlers.get(call.method)
        if handler is None:
            raise NotFound(f"{call.service} has no event handler {excerpt(call.method)!r}")
        try:
            payload = handler.validator.validate_json(call.body, strict=hosted.settings.strict)
        except pydantic.ValidationError as exc:
            raise _invalid(f"invalid payload for {call.service}.{call.method}", exc) from None
        func = getattr(hosted.service, handler.attr)
        await self._run(func, (payload,), handler.is_async, call, None, hosted)
        return _EMPTY

    async def _run(
        self,
        func: Any,
        args: dict[str, Any] | tuple[Any, ...],
        is_async: bool,
        call: Call,
        method: MethodSpec | None,
        hosted: _Hosted,
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
                return await hosted.pool.run(func, *positional, **kwargs)
            if deadline <= time.time():
                raise DeadlineExceeded(f"deadline passed before {call.service}.{call.method} ran")
            limit = until(deadline)
            try:
                with limit:
                    if is_async:
                        return await func(*positional, **kwargs)
                    return await hosted.pool.run(func, *positional, **kwargs)
            except TimeoutError:
                if limit.expired:  # ours, not one raised by the method itself
                    raise DeadlineExceeded(
                        f"{call.service}.{call.method} did not finish before its deadline"
                    ) from None
                raise
        except LumiError:
            raise
        except Exception as exc:
            raise _internal(call, exc, hosted.settings.expose_errors) from None


def _internal(call: Call, exc: Exception, expose: bool) -> Internal:
    """Log ``exc`` with its stack under a new error id; the error for the wire names the id."""
    error_id = new_id()
    log.error(
        "%s.%s raised an unexpected error (error id %s)",
        call.service,
        call.method,
        error_id,
        exc_info=exc,
        extra={"error_id": error_id},
    )
    what = f"{type(exc).__name__}: {exc}" if expose else "internal error"
    return Internal(f"{what} (error id {error_id})", {"error_id": error_id})


def _invalid(prefix: str, exc: pydantic.ValidationError) -> InvalidArgument:
    """INVALID_ARGUMENT with pydantic's details for at most :data:`MAX_ERRORS` errors, none
    echoing the input (names from the input are cut short)."""
    count = exc.error_count()
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    details: list[dict[str, Any]] = []
    parts: list[str] = []
    for error in errors[:MAX_ERRORS]:
        loc = [p if isinstance(p, int) else excerpt(str(p)) for p in error["loc"][:20]]
        msg = excerpt(error["msg"], 200)
        details.append({"loc": loc, "msg": msg, "type": error["type"]})
        if len(parts) < 3:
            parts.append(f"{'.'.join(str(p) for p in loc) or '(arguments)'}: {msg}")
    summary = "; ".join(parts) + (f" (and {count - len(parts)} more)" if count > len(parts) else "")
    return InvalidArgument(f"{prefix}: {summary}", details)


def _suggest(name: str, known: Iterable[str]) -> str:
    if len(name) > 64:  # a long name is no typo of a known one (and matching it costs)
        return ""
    match = close_matches(name, list(known), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""
