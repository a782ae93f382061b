"""Hypothesis strategies that build random, valid Lumi services (for property tests)."""

from __future__ import annotations

import datetime
import enum
import itertools
import keyword
from typing import Any, Literal

import pydantic
from hypothesis import strategies as st

import lumi

_counter = itertools.count()
_BASE64 = pydantic.ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")

names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda n: not keyword.iskeyword(n) and not n.endswith("_") and "__" not in n
)
scalars = st.sampled_from([int, float, str, bool, bytes, datetime.datetime, datetime.date])


def _enum() -> st.SearchStrategy[Any]:
    def build(values: list[str]) -> Any:
        members = {f"V{i}": v for i, v in enumerate(values)}
        return enum.Enum(f"E{next(_counter)}", members)  # type: ignore[misc]

    return st.lists(names, min_size=1, max_size=4, unique=True).map(build)


def _literal() -> st.SearchStrategy[Any]:
    return st.lists(names, min_size=1, max_size=3, unique=True).map(lambda v: Literal[tuple(v)])


def types(depth: int = 2) -> st.SearchStrategy[Any]:
    if depth == 0:
        return st.one_of(scalars, _enum(), _literal())
    inner = types(depth - 1)
    return st.one_of(
        scalars,
        _enum(),
        _literal(),
        inner.map(lambda t: list[t]),  # type: ignore[valid-type]
        inner.map(lambda t: dict[str, t]),  # type: ignore[valid-type]
        inner.map(lambda t: t | None),
        st.tuples(scalars, scalars).filter(lambda p: p[0] is not p[1]).map(lambda p: p[0] | p[1]),
        models(depth - 1),
    )


def models(depth: int) -> st.SearchStrategy[Any]:
    def build(fields: dict[str, Any]) -> Any:
        spec = {name: (tp, ...) for name, tp in fields.items()}
        return pydantic.create_model(f"M{next(_counter)}", __config__=_BASE64, **spec)  # type: ignore[call-overload]

    return st.dictionaries(names, types(depth), min_size=1, max_size=4).map(build)


@st.composite
def services(draw: st.DrawFn, name: str) -> type[lumi.Service]:
    """A service class with random methods and events, valid for Lumi."""
    members: dict[str, Any] = {"__doc__": draw(st.text(max_size=30))}
    for method in draw(st.lists(names, min_size=1, max_size=4, unique=True)):
        params = draw(st.dictionaries(names.filter(lambda n: n != "self"), types(), max_size=4))
        returns = draw(st.one_of(types(), st.just(None)))

        def func(self: object, **kwargs: Any) -> Any:
            raise NotImplementedError

        import inspect

        func.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
            + [inspect.Parameter(p, inspect.Parameter.KEYWORD_ONLY) for p in params]
        )
        func.__annotations__ = {**params, "return": returns}
        func.__name__ = method
        members[f"m_{method}"] = lumi.api(name=method, idempotent=draw(st.booleans()))(func)
    for event in draw(st.lists(names, max_size=2, unique=True)):
        members[f"e_{event}"] = lumi.event(draw(models(1)))
    return type(name, (lumi.Service,), members)
