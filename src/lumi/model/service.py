"""The service model: ``Service``, ``@api``, ``event``, ``@subscribe`` and ``@auth``.

Decorators only attach metadata and return the function unchanged, so a service method stays a
plain method that a unit test can call. Reflection into an interface happens in
:mod:`lumi.model.interface`; running happens elsewhere. This module does no I/O.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar, overload

from lumi.model.hints import Retry

F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M")

API_ATTR = "__lumi_api__"
SUBSCRIBE_ATTR = "__lumi_subscribe__"
AUTH_ATTR = "__lumi_auth__"


class Service:
    """Base class of every Lumi service.

    Class attributes configure the interface: ``name`` (defaults to the class name) and
    ``version`` (a semantic version, default ``"0.1.0"``). Annotations naming other
    ``Service`` classes are capabilities, injected as clients before ``startup`` runs.
    Override ``startup``/``shutdown`` (sync or async) for lifecycle work.
    """

    name: typing.ClassVar[str] = ""
    version: typing.ClassVar[str] = "0.1.0"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = cls.__name__
        # a type that cannot travel fails the class statement, not the first interface build
        from lumi.model.declare import check_declaration

        check_declaration(cls, API_ATTR, SUBSCRIBE_ATTR, EventSpec)

    async def startup(self) -> None:
        """Called once after capabilities are injected, in dependency order."""

    async def shutdown(self) -> None:
        """Called once at stop, in reverse dependency order."""


@dataclasses.dataclass(frozen=True)
class ApiOptions:
    name: str | None = None
    idempotent: bool = False
    timeout: float | None = None
    retry: Retry | None = None
    public: bool = False


@overload
def api(fn: F, /) -> F: ...
@overload
def api(
    *,
    name: str | None = None,
    idempotent: bool = False,
    timeout: float | None = None,
    retry: Retry | int | bool | None = None,
    public: bool = False,
) -> Callable[[F], F]: ...
def api(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    idempotent: bool = False,
    timeout: float | None = None,
    retry: Retry | int | bool | None = None,
    public: bool = False,
) -> F | Callable[[F], F]:
    """Export a method as an RPC: ``@lumi.api`` or ``@lumi.api(idempotent=True, timeout=2)``.

    ``name`` renames it on the wire; ``idempotent`` allows retrying it after a timeout;
    ``timeout`` (seconds) is its default deadline; ``retry`` tells clients how to retry it;
    ``public`` makes it reachable from outside the app, without a service certificate (the
    service's ``@lumi.auth`` handler, if it has one, then verifies the caller's bearer token).
    The docstring becomes the method's documentation.
    """
    if timeout is not None and timeout <= 0:
        raise ValueError(f"timeout must be positive, not {timeout!r}")
    options = ApiOptions(
        name=name,
        idempotent=idempotent,
        timeout=timeout,
        retry=Retry.coerce(retry),
        public=bool(public),
    )

    def register(func: F) -> F:
        if not callable(func):
            raise TypeError(f"@lumi.api decorates a method, not {func!r}")
        setattr(func, API_ATTR, options)
        return func

    return register(fn) if fn is not None else register


class EventSpec(Generic[M]):
    """An event a service exports: ``reserved = lumi.event(Reserved)``.

    On the class it describes the event (``Inventory.reserved``, used by ``@subscribe``); on an
    instance it is a publisher: ``await self.reserved.publish(Reserved(...))``.
    """

    def __init__(self, model: type[M], *, doc: str = "", key: str | None = None) -> None:
        self.model = model
        self.doc = doc
        self.key = key
        self.name = ""
        self.owner: type[Service] | None = None

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        if isinstance(owner, type) and issubclass(owner, Service):
            self.owner = owner

    @property
    def service_name(self) -> str:
        return self.owner.name if self.owner is not None else ""

    @property
    def topic(self) -> str:
        return f"{self.service_name}.{self.name}"

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> EventSpec[M]: ...
    @overload
    def __get__(self, obj: object, objtype: type | None = None) -> Publisher[M]: ...
    def __get__(
        self, obj: object | None, objtype: type | None = None
    ) -> EventSpec[M] | Publisher[M]:
        if obj is None:
            return self
        return Publisher(self, obj)

    def __repr__(self) -> str:
        return f"<lumi.event {self.topic} of {getattr(self.model, '__name__', self.model)}>"


def event(model: type[M], *, doc: str = "", key: str | None = None) -> EventSpec[M]:
    """Declare an exported event carrying ``model``; ``key`` names the payload field used as
    partition key (events with the same key are delivered in order)."""
    return EventSpec(model, doc=doc, key=key)


class EventSink(Protocol):
    """What a runtime gives each service instance to publish through
    (:class:`lumi.pipeline.publish.EventSink`)."""

    async def publish(
        self, spec: EventSpec[Any], payload: Any, *, key: str | None = None
    ) -> str: ...

    async def publish_many(
        self, spec: EventSpec[Any], payloads: list[Any], *, key: str | None = None
    ) -> list[str]: ...


class Publisher(Generic[M]):
    """``self.<event>`` on a service instance: publishes through the runtime's broker."""

    __slots__ = ("service", "spec")

    def __init__(self, spec: EventSpec[M], service: object) -> None:
        self.spec = spec
        self.service = service

    async def publish(self, payload: M, *, key: str | None = None) -> str:
        """Publish one event; returns its id once it is stored durably."""
        return await self._sink().publish(self.spec, payload, key=key)

    async def publish_many(self, payloads: list[M], *, key: str | None = None) -> list[str]:
        """Publish a batch in one write; returns the ids."""
        return await self._sink().publish_many(self.spec, payloads, key=key)

    def _sink(self) -> EventSink:
        sink: EventSink | None = getattr(self.service, "_lumi_events", None)
        if sink is None:
            raise RuntimeError(
                f"{type(self.service).__name__}.{self.spec.name}: this service is not running in "
                f"a Lumi runtime, so it cannot publish (use lumi.testing.worker() in unit tests)"
            )
        return sink


@dataclasses.dataclass(frozen=True)
class SubscribeOptions:
    service: str
    event: str
    max_attempts: int = 5
    start: str = "earliest"
    model: Any = None  # the payload type, when the event's class is known


def subscribe(
    source: EventSpec[Any] | str, *, max_attempts: int = 5, start: str = "earliest"
) -> Callable[[F], F]:
    """Handle another service's event: ``@lumi.subscribe(Inventory.reserved)``.

    ``source`` is the event descriptor, or ``"Service.event"`` for a service known only by its
    interface. After ``max_attempts`` failed deliveries an event moves to the dead-letter topic.
    ``start`` is where a new subscription begins: ``"earliest"`` retained event or ``"latest"``.
    """
    if isinstance(source, EventSpec):
        if source.owner is None:
            raise TypeError(f"{source!r} is not declared on a lumi.Service class")
        service, name, model = source.service_name, source.name, source.model
    elif isinstance(source, str) and source.count(".") == 1:
        service, name = source.split(".")
        model = None
    else:
        raise TypeError(f"@lumi.subscribe takes Service.event or 'Service.event', not {source!r}")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
    if start not in ("earliest", "latest"):
        raise ValueError(f"start must be 'earliest' or 'latest', not {start!r}")
    options = SubscribeOptions(service, name, max_attempts, start, model)

    def register(func: F) -> F:
        setattr(func, SUBSCRIBE_ATTR, options)
        return func

    return register


def auth(fn: F, /) -> F:
    """Mark the method that verifies end users' bearer tokens for this service's public methods.

    It takes the token (the text after ``Bearer``) and returns the :class:`lumi.User` the call
    is made for, or raises :class:`lumi.Unauthenticated`; it may be sync or async. Annotate the
    token ``str | None`` to be called for public calls that carry no token too (return None to
    serve them anonymously); otherwise such calls are refused with UNAUTHENTICATED::

        @lumi.auth
        async def authenticate(self, token: str) -> lumi.User:
            claims = await verify(token)        # e.g. lumi.Jwt(...).verify
            return lumi.User(claims["sub"], {"scope": claims.get("scope", "")})
    """
    if not callable(fn):
        raise TypeError(f"@lumi.auth decorates a method, not {fn!r}")
    setattr(fn, AUTH_ATTR, True)
    return fn


Handler = Callable[..., Awaitable[Any]]
