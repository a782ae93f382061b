"""Wire validators (lumi.model.wire_validation): strict as the schema, finite, cheap to refuse."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Annotated, Any

import pydantic
import pytest

from lumi.model.wire_validation import extras_message, wire_validator


class Leaf(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    name: str
    weight: float = 0.0
    parent: Leaf | None = None


@dataclasses.dataclass
class Point:
    x: float


class Params(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    n: Annotated[int, pydantic.Field(gt=0)] = 1
    xs: list[int] = []
    by: dict[str, float] = {}
    leaf: Leaf | None = None
    point: Point | None = None


@pytest.fixture(scope="module")
def validate() -> Any:
    validator = wire_validator(Params.__pydantic_core_schema__, keep_extras=True)
    return lambda body: validator.validate_json(body, strict=True)


def errors(validate: Any, body: bytes) -> list[tuple[tuple[Any, ...], str]]:
    with pytest.raises(pydantic.ValidationError) as info:
        validate(body)
    return [(e["loc"], e["type"]) for e in info.value.errors()]


def test_valid_input_gives_the_models_themselves(validate: Any) -> None:
    """Nested models, recursive models and dataclasses come out as their own types."""
    got = validate(b'{"n": 2, "leaf": {"name": "a", "parent": {"name": "b"}}, "point": {"x": 1}}')
    assert isinstance(got, Params) and isinstance(got.leaf, Leaf) and got.leaf.parent.name == "b"
    assert got.point == Point(x=1.0) and got.leaf.__pydantic_extra__ is None
    assert Params.model_validate_json(b'{"n": 1}').n == 1  # the class's own validator is intact


@pytest.mark.parametrize(
    "body",
    [b'{"by": {"a": NaN}}', b'{"by": {"a": Infinity}}', b'{"by": {"a": -Infinity}}',
     b'{"by": {"a": 1e400}}', b'{"leaf": {"name": "a", "parent": {"name": "b", "weight": NaN}}}',
     b'{"point": {"x": NaN}}'],
)  # fmt: skip
def test_json_has_no_nan_or_infinity(validate: Any, body: bytes) -> None:
    """NaN, Infinity and numbers too large for a float are refused at any depth."""
    assert errors(validate, body)


@pytest.mark.parametrize(
    ("body", "ok"),
    [(b'{"n": 5}', 5), (b'{"n": 5.0}', 5), (b'{"n": 1e3}', 1000), (b'{"n": 5.5}', None),
     (b'{"n": "5"}', None), (b'{"n": true}', None), (b'{"n": 0.0}', None)],
)  # fmt: skip
def test_integers_are_what_json_schema_calls_integers(
    validate: Any, body: bytes, ok: int | None
) -> None:
    """An integer is a JSON number with no fractional part (5, 5.0, 1e3) — not a string, not
    a boolean — and its bounds still say what is wrong."""
    if ok is not None:
        assert validate(body).n == ok
    else:
        assert errors(validate, body)
    assert errors(validate, b'{"n": 0}') == [(("n",), "greater_than")]


def test_a_long_bad_list_stops_at_its_first_bad_item(validate: Any) -> None:
    """A million wrong items make one error, refused in about the time parsing takes."""
    body = json.dumps({"xs": ["x"] * 1_000_000}).encode()
    started = time.perf_counter()
    found = errors(validate, body)
    assert found == [(("xs", 0), "int_type")]
    assert time.perf_counter() - started < 2.0


def test_unknown_fields_make_one_error(validate: Any) -> None:
    """Unknown top-level arguments are kept for the caller to refuse in one message; unknown
    fields of a nested model that forbids them are one error naming the first five."""
    extra = validate(json.dumps({f"k{i}": 0 for i in range(1000)}).encode()).__pydantic_extra__
    message = extras_message(extra)
    assert message == "Extra inputs are not permitted: 'k0', 'k1', 'k2', 'k3', 'k4' and 995 more"
    assert extras_message({}) is None
    nested = errors(validate, b'{"leaf": {"name": "a", "parent": {"name": "b", "z": 1}}}')
    assert nested == [(("leaf", "parent"), "extra_forbidden")]
