"""Clients: call a service's methods through any channel.

A client is built from a :class:`ServiceInterface` alone (results come back as plain JSON
values) or from the service class (results are validated into the declared return types).
Arguments always leave as JSON bytes, so caller and callee never share a mutable object, and the
callee validates them exactly as it would over a network.
"""

from __future__ import annotations

from typing import Any, cast

import pydantic
import pydantic_core

from lumi.model.context import new_id, outbound_metadata
from lumi.model.errors import InvalidArgument
from lumi.model.interface import MethodInfo, ServiceInterface
from lumi.model.reflect import Reflected, reflect
from lumi.model.suggest import close_matches
from lumi.pipeline import Call, Handler


class Client:
    """A client of one service. Methods are attributes: ``await client.place(sku="a", qty=1)``."""

    def __init__(
        self,
        interface: ServiceInterface,
        invoke: Handler,
        *,
        reflected: Reflected | None = None,
    ) -> None:
        self._interface = interface
        self._invoke = invoke
        self._returns: dict[str, pydantic.TypeAdapter[Any]] = (
            {name: spec.returns for name, spec in reflected.methods.items()} if reflected else {}
        )
        self._methods: dict[str, _Method] = {}
        for name, info in interface.methods.items():
            method = self._methods[name] = _Method(self, name, info)
            if name.isidentifier() and not hasattr(type(self), name):
                setattr(self, name, method)  # plain attribute: no __getattr__ on the hot path

    @classmethod
    def for_service(cls, service: type, invoke: Handler) -> Client:
        reflected = reflect(service)
        return cls(reflected.interface, invoke, reflected=reflected)

    @property
    def interface(self) -> ServiceInterface:
        return self._interface

    def __getattr__(self, name: str) -> _Method:
        methods = self.__dict__.get("_methods")
        if methods is None or name.startswith("__"):
            raise AttributeError(name)
        try:
            return cast(_Method, methods[name])
        except KeyError:
            known = sorted(methods)
            match = close_matches(name, known, n=1)
            hint = f"; did you mean {match[0]!r}?" if match else ""
            raise AttributeError(
                f"{self._interface.name} has no method {name!r}{hint} (methods: "
                f"{', '.join(known) or 'none'})"
            ) from None

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._methods))

    async def call(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """Call ``method`` by name (also works for names that are not Python identifiers)."""
        bound = self._methods.get(method)
        if bound is None:
            # Let the callee answer NOT_FOUND, as any other client would see.
            return await self._send(method, None, _encode(kwargs, method))
        return await bound(*args, **kwargs)

    async def invoke(
        self, method: str, arguments: dict[str, Any], *, timeout: float | None = None
    ) -> Any:
        """Call ``method`` with an arguments object; ``timeout`` (seconds) sets the deadline."""
        return await self._send(
            method, self._interface.methods.get(method), _encode(arguments, method), timeout
        )

    async def _send(
        self, method: str, info: MethodInfo | None, body: bytes, timeout: float | None = None
    ) -> Any:
        if timeout is None and info is not None:
            timeout = info.timeout
        # One key per logical call, kept on every retry, lets the callee answer a retried
        # non-idempotent call from its first result. An idempotent method may simply run again,
        # so it gets no key (and its results are not cached by the callee).
        key = None if info is not None and info.idempotent else new_id()
        metadata = outbound_metadata(timeout=timeout, idempotency_key=key)
        call = Call(self._interface.name, method, body, metadata, info=info)
        result = await self._invoke(call)
        returns = self._returns.get(method)
        if returns is not None:
            return returns.validator.validate_json(result)
        return pydantic_core.from_json(result) if result else None

    def __repr__(self) -> str:
        return f"<lumi.Client of {self._interface.name}>"


class _Method:
    # One method of a client. Calling it does what Client._send does, with what that reads
    # from the client kept here: reading an attribute of a class with __getattr__ (Client)
    # costs more on every call.

    __slots__ = (
        "__doc__",
        "client",
        "idempotent",
        "info",
        "invoke",
        "name",
        "order",
        "returns",
        "service",
        "timeout",
    )

    def __init__(self, client: Client, name: str, info: MethodInfo) -> None:
        self.client = client
        self.name = name
        self.info = info
        self.order = info.param_names
        self.__doc__ = info.doc
        self.service = client._interface.name
        self.invoke = client._invoke
        self.returns = client._returns.get(name)
        self.timeout = info.timeout
        self.idempotent = info.idempotent

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if args:
            if len(args) > len(self.order):
                raise TypeError(
                    f"{self.client.interface.name}.{self.name} takes {len(self.order)} "
                    f"arguments but {len(args)} were given"
                )
            for name, value in zip(self.order, args, strict=False):
                if name in kwargs:
                    raise TypeError(f"{self.name}() got multiple values for argument {name!r}")
                kwargs[name] = value
        name = self.name
        body = _encode(kwargs, name)
        # (as Client._send: a key for a non-idempotent method only)
        key = None if self.idempotent else new_id()
        metadata = outbound_metadata(timeout=self.timeout, idempotency_key=key)
        result = await self.invoke(Call(self.service, name, body, metadata, info=self.info))
        returns = self.returns
        if returns is not None:
            # (the validator itself: TypeAdapter.validate_json passes it seven keywords)
            return returns.validator.validate_json(result)
        return pydantic_core.from_json(result) if result else None

    def __repr__(self) -> str:
        return f"<lumi method {self.client.interface.name}.{self.name}>"


def _encode(kwargs: dict[str, Any], method: str) -> bytes:
    try:
        return pydantic_core.to_json(kwargs, bytes_mode="base64")
    except pydantic_core.PydanticSerializationError as exc:
        raise InvalidArgument(f"arguments of {method} cannot be sent as JSON: {exc}") from None
