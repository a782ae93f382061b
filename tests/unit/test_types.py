"""The JSON-like type system: what is accepted and what is rejected, with which message."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import socket
from typing import Annotated, Any, Literal, Optional

import pydantic
import pytest

import lumi
from lumi.model.types import check_type


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Inner(pydantic.BaseModel):
    x: int


class Outer(pydantic.BaseModel):
    inner: Inner
    tags: list[str] = []


@dataclasses.dataclass
class Point:
    x: float
    y: float


@pytest.mark.parametrize(
    "tp",
    [
        None, bool, int, float, str, bytes, datetime.datetime, datetime.date,
        list[int], dict[str, list[Inner]], Optional[int], int | str | None,  # noqa: UP045
        Literal["a", "b"], Color, Outer, Point, Annotated[int, pydantic.Field(gt=0)],
        Annotated[str, lumi.Sensitive],
    ],
)  # fmt: skip
def test_json_like_types_are_accepted(tp: Any) -> None:
    """Every type of the JSON-like system passes the check."""
    check_type(tp, "S.m: parameter 'p'")


@pytest.mark.parametrize(
    ("tp", "fragment"),
    [
        (socket.socket, "type socket"),
        (object, "name a concrete type"),
        (Any, "name a concrete type"),
        (set[int], "use list[T] instead"),
        (tuple[int, int], "use list[T] instead"),
        (dict[int, str], "JSON object keys are strings"),
        (list, "say what the list holds"),
        (Literal[1.5], "Literal values must be"),
        (type(lambda: 0), "type function"),
    ],
)
def test_unsupported_types_are_rejected_with_a_clear_message(tp: Any, fragment: str) -> None:
    """A type outside the system raises DefinitionError naming the place and the fix."""
    with pytest.raises(lumi.DefinitionError) as info:
        check_type(tp, "Orders.place: parameter 'p'")
    assert "Orders.place: parameter 'p'" in str(info.value)
    assert fragment in str(info.value)


def test_nested_model_fields_are_checked_with_their_path() -> None:
    """A bad field deep inside a model is reported with the path to it."""

    class Bad(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)
        sock: socket.socket

    class Wrapper(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)
        bad: Bad

    with pytest.raises(
        lumi.DefinitionError, match=r"S\.m: return value -> Wrapper\.bad -> Bad\.sock"
    ):
        check_type(Wrapper, "S.m: return value")


def test_bytes_inside_a_model_require_base64_config() -> None:
    """Bytes in a model that would travel as UTF-8 are rejected, with the config to add."""

    class Blob(pydantic.BaseModel):
        data: bytes

    with pytest.raises(lumi.DefinitionError, match="ser_json_bytes='base64'"):
        check_type(Blob, "S.m: parameter 'blob'")

    class GoodBlob(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")
        data: bytes

    check_type(GoodBlob, "S.m: parameter 'blob'")


def test_recursive_models_are_accepted() -> None:
    """A self-referencing model does not loop forever."""

    class Node(pydantic.BaseModel):
        children: list[Node] = []

    Node.model_rebuild()
    check_type(Node, "S.m: parameter 'tree'")
