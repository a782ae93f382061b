"""Checks that run when a ``lumi.Service`` subclass is created (``class Orders(lumi.Service)``).

A parameter, result or event payload of a type Lumi cannot send (``set[int]``, ``tuple``,
``Any``, an arbitrary class) is a :class:`~lumi.model.errors.DefinitionError` raised by the
``class`` statement itself, naming the service, member and parameter — not later, when the
interface is first built. An annotation that cannot be resolved yet (a name defined further
down the module) is left to reflection, which checks every member again with the whole module
loaded.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from lumi.model.types import check_type

_UNRESOLVED = object()


def check_declaration(cls: type, api_attr: str, subscribe_attr: str, event_type: type) -> None:
    """Check the types of the members ``cls`` itself declares (inherited ones were checked
    with their own class)."""
    where = getattr(cls, "name", "") or cls.__name__
    for attr, raw in vars(cls).items():
        if isinstance(raw, event_type):
            model = getattr(raw, "model", None)
            check_type(model, f"{where}.{attr}: event payload")
            continue
        func = raw.__func__ if isinstance(raw, staticmethod | classmethod) else raw
        options = getattr(func, api_attr, None)
        if options is not None:
            name = getattr(options, "name", None) or attr
            _check_function(func, f"{where}.{name}", returns=True)
        elif getattr(func, subscribe_attr, None) is not None:
            _check_function(func, f"{where}.{attr}", returns=False)


def _check_function(func: Any, where: str, *, returns: bool) -> None:
    annotations = getattr(func, "__annotations__", None) or {}
    for name, annotation in annotations.items():
        if name == "return" and not returns:
            continue
        resolved = _resolve(func, name, annotation)
        if resolved is _UNRESOLVED:
            continue
        place = "return value" if name == "return" else f"parameter '{name}'"
        check_type(resolved, f"{where}: {place}")


def _resolve(func: Any, name: str, annotation: Any) -> Any:
    """One annotation evaluated in the function's module, or _UNRESOLVED if it names
    something not defined yet."""
    if not isinstance(annotation, str):
        return annotation
    holder = types.SimpleNamespace(
        __annotations__={name: annotation}, __globals__=getattr(func, "__globals__", {})
    )
    try:
        return typing.get_type_hints(holder, include_extras=True)[name]
    except Exception:  # NameError, or a name that is not a type yet: reflection reports it
        return _UNRESOLVED
