"""Plain coercion of the CLI's parameters, without pydantic.

typer (0.2x) coerces every parameter through a pydantic ``TypeAdapter``: importing pydantic and
building the adapters cost ~60 ms on every command (``bench/cli_bench.py``). The CLI's
parameters are ``str``, ``int``, ``float``, ``bool`` and ``Path`` (or lists of them): a value
that converts plainly is converted here; any other value or type goes to typer's own coercion,
so errors and unusual types are exactly typer's. On a typer without this layout, nothing
changes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, cast, get_args, get_origin

_INT = re.compile(r"\s*[+-]?\d+\s*")
_BOOLS = {word: True for word in ("true", "1", "yes", "y", "on", "t")} | {
    word: False for word in ("false", "0", "no", "n", "off", "f")
}


class _NotPlain(Exception):
    """The value needs typer's own coercion (and its error message)."""


def _leaf(annotation: Any, info: Any, value: Any) -> Any:
    if annotation is str and isinstance(value, str):
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _BOOLS:
            return _BOOLS[value.strip().lower()]
    elif annotation is int and isinstance(value, int | str) and not isinstance(value, bool):
        if isinstance(value, int) or _INT.fullmatch(value):
            number = int(value)
            if (info.min is None or number >= info.min) and (
                info.max is None or number <= info.max
            ):
                return number
    elif (
        annotation is float and isinstance(value, int | float | str) and not isinstance(value, bool)
    ):
        if info.min is None and info.max is None:
            try:
                return float(value)
            except ValueError:
                pass
    elif annotation is Path and isinstance(value, str | Path):
        return Path(value)
    raise _NotPlain


def _plain_annotation(annotation: Any) -> bool:
    if get_origin(annotation) is list:
        (annotation,) = get_args(annotation) or (None,)
    return annotation in (str, bool, int, float, Path)


def install() -> None:
    """Coerce plain parameters without pydantic (typer 0.2x's ``_TyperParameter``)."""
    try:
        from typer import core
        from typer._coercion import RuntimeParam, build_runtime_param
        from typer._param_types import coerce_cli_path
    except ImportError:  # an older typer coerces through click, without pydantic
        return
    parameter = getattr(core, "_TyperParameter", None)
    if parameter is None or not hasattr(parameter, "get_runtime_param"):
        return

    class PlainRuntimeParam(RuntimeParam):
        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            try:
                return self._plain(value, param, ctx)
            except _NotPlain:
                full = build_runtime_param(param.type_descriptor)
                return full._coerce_value(value, param=param, ctx=ctx)

        def _plain(self, value: Any, param: Any, ctx: Any) -> Any:
            info, annotation = self.parameter_info, cast(Any, self.annotation)
            if info.parser is not None or info.clamp:
                raise _NotPlain
            if get_origin(annotation) is list:
                (inner,) = get_args(annotation)
                items = value if isinstance(value, list | tuple) else [value]
                return [self._one(inner, item, param, ctx) for item in items]
            return self._one(annotation, value, param, ctx)

        def _one(self, annotation: Any, value: Any, param: Any, ctx: Any) -> Any:
            result = _leaf(annotation, self.parameter_info, value)
            if annotation is Path:  # typer's checks: exists, file_okay, resolve_path, ...
                return coerce_cli_path(result, self.parameter_info, path_type=Path,
                                       param=param, ctx=ctx)  # fmt: skip
            return result

    def get_runtime_param(self: Any) -> Any:
        if self._runtime_param is None:
            descriptor = self.type_descriptor
            if _plain_annotation(descriptor.annotation) and descriptor.file_annotation is None:
                self._runtime_param = PlainRuntimeParam(
                    parameter_info=descriptor.parameter_info, annotation=descriptor.annotation
                )
            else:
                self._runtime_param = build_runtime_param(descriptor)
        return self._runtime_param

    parameter.get_runtime_param = get_runtime_param
