"""``lumi api diff``: a table of change kinds with the verdicts they must get, version rules and
the allow-list. Both sides of each row are real service classes, so the schemas are exactly what
pydantic emits for them."""

from __future__ import annotations

import enum
import textwrap
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import pytest

import lumi
from lumi.model.errors import ConfigError
from lumi.packaging.compat import (
    Allowance,
    Level,
    apply_allow_list,
    diff_apps,
    diff_interfaces,
    load_allow_list,
    version_errors,
)

W, S, C = Level.WIRE, Level.SOURCE, Level.COMPATIBLE

# Models every row may use: Item is sent (a parameter), Receipt is received (a result),
# Moved is an event payload (read both ways), Shared is sent and received.
PRELUDE = """
class Color(str, enum.Enum):
    RED = "red"
    GREEN = "green"

class Item(pydantic.BaseModel):
    sku: str
    qty: int = 1

class Receipt(pydantic.BaseModel):
    id: str
    note: str = ""

class Moved(pydantic.BaseModel):
    sku: str

class Shared(pydantic.BaseModel):
    n: int
"""


def service(body: str, models: str = "") -> lumi.ServiceInterface:
    """The interface of ``class S(lumi.Service)`` with ``body``, after ``models`` (which may
    redefine the prelude's models)."""
    source = PRELUDE + textwrap.dedent(models) + "\nclass S(lumi.Service):\n"
    source += textwrap.indent(textwrap.dedent(body), "    ")
    namespace: dict[str, Any] = {
        "lumi": lumi, "pydantic": pydantic, "enum": enum, "Annotated": Annotated,
        "Literal": Literal, "Field": pydantic.Field, "__name__": "compat_case",
    }  # fmt: skip
    exec(compile(source, "<case>", "exec"), namespace)  # test-authored source, not wire data
    return lumi.interface(namespace["S"])


API = "@lumi.api\n"
CASES: list[tuple[str, str, str, set[tuple[str, Level]]]] = [
    # (name, old body, new body, expected {(kind, level)}); models go after a "---" line.
    ("method removed",
     API + "def a(self) -> int: ...\n" + API + "def b(self, x: int) -> int: ...",
     API + "def a(self) -> int: ...",
     {("method-removed", W)}),
    ("method added",
     API + "def a(self) -> int: ...",
     API + "def a(self) -> int: ...\n" + API + "def b(self, x: int) -> int: ...",
     {("method-added", C)}),
    ("method renamed",
     API + "def a(self, x: int) -> str: ...",
     API + "def b(self, x: int) -> str: ...",
     {("method-renamed", W)}),
    ("required parameter added",
     API + "def a(self, x: int) -> int: ...",
     API + "def a(self, x: int, y: int) -> int: ...",
     {("required-parameter-added", W)}),
    ("optional parameter added",
     API + "def a(self, x: int) -> int: ...",
     API + "def a(self, x: int, y: int = 0) -> int: ...",
     {("optional-parameter-added", C)}),
    ("parameter removed",
     API + "def a(self, x: int, y: int) -> int: ...",
     API + "def a(self, x: int) -> int: ...",
     {("parameter-removed", W)}),
    ("parameter renamed",
     API + "def a(self, x: int, y: str) -> int: ...",
     API + "def a(self, x: int, z: str) -> int: ...",
     {("parameter-renamed", W)}),
    ("parameters reordered",
     API + "def a(self, x: int, y: str) -> int: ...",
     API + "def a(self, y: str, x: int) -> int: ...",
     {("params-reordered", S)}),
    ("parameter optional to required",
     API + "def a(self, x: int = 1) -> int: ...",
     API + "def a(self, x: int) -> int: ...",
     {("optional-to-required", W)}),
    ("parameter required to optional",
     API + "def a(self, x: int) -> int: ...",
     API + "def a(self, x: int = 1) -> int: ...",
     {("required-to-optional", C)}),
    ("parameter default changed",
     API + "def a(self, x: int = 1) -> int: ...",
     API + "def a(self, x: int = 2) -> int: ...",
     {("default-changed", S)}),
    ("parameter type changed",
     API + "def a(self, x: int) -> int: ...",
     API + "def a(self, x: str) -> int: ...",
     {("type-changed", W)}),
    ("parameter made nullable",
     API + "def a(self, x: int) -> int: ...",
     API + "def a(self, x: int | None) -> int: ...",
     {("nullable-added", C)}),
    ("parameter no longer nullable",
     API + "def a(self, x: int | None) -> int: ...",
     API + "def a(self, x: int) -> int: ...",
     {("nullable-removed", W)}),
    ("result made nullable",
     API + "def a(self) -> int: ...",
     API + "def a(self) -> int | None: ...",
     {("nullable-added", W)}),
    ("result no longer nullable",
     API + "def a(self) -> int | None: ...",
     API + "def a(self) -> int: ...",
     {("nullable-removed", C)}),
    ("result type changed",
     API + "def a(self) -> int: ...",
     API + "def a(self) -> str: ...",
     {("type-changed", W)}),
    ("list item type changed",
     API + "def a(self, x: list[int]) -> int: ...",
     API + "def a(self, x: list[str]) -> int: ...",
     {("type-changed", W)}),
    ("map value type changed",
     API + "def a(self) -> dict[str, int]: ...",
     API + "def a(self) -> dict[str, str]: ...",
     {("type-changed", W)}),
    ("field removed from a sent model",
     API + "def a(self, item: Item) -> int: ...",
     API + "def a(self, item: Item) -> int: ...\n---\nclass Item(pydantic.BaseModel):\n    sku: str",
     {("field-removed", W)}),
    ("required field removed from a received model",
     API + "def a(self) -> Receipt: ...",
     API + "def a(self) -> Receipt: ...\n---\nclass Receipt(pydantic.BaseModel):\n    note: str = ''",
     {("field-removed", W)}),
    ("optional field removed from a received model",
     API + "def a(self) -> Receipt: ...",
     API + "def a(self) -> Receipt: ...\n---\nclass Receipt(pydantic.BaseModel):\n    id: str",
     {("field-removed", C)}),
    ("required field added to a sent model",
     API + "def a(self, item: Item) -> int: ...",
     API + "def a(self, item: Item) -> int: ...\n---\n"
     "class Item(pydantic.BaseModel):\n    sku: str\n    qty: int = 1\n    bin: str",
     {("required-field-added", W)}),
    ("optional field added to a sent model",
     API + "def a(self, item: Item) -> int: ...",
     API + "def a(self, item: Item) -> int: ...\n---\n"
     "class Item(pydantic.BaseModel):\n    sku: str\n    qty: int = 1\n    bin: str = ''",
     {("optional-field-added", C)}),
    ("required field added to a received model",
     API + "def a(self) -> Receipt: ...",
     API + "def a(self) -> Receipt: ...\n---\n"
     "class Receipt(pydantic.BaseModel):\n    id: str\n    note: str = ''\n    at: int",
     {("required-field-added", C)}),
    ("received field made optional",
     API + "def a(self) -> Receipt: ...",
     API + "def a(self) -> Receipt: ...\n---\n"
     "class Receipt(pydantic.BaseModel):\n    id: str = ''\n    note: str = ''",
     {("required-to-optional", S)}),
    ("enum value added to a sent enum",
     API + "def a(self, c: Color) -> int: ...",
     API + "def a(self, c: Color) -> int: ...\n---\n"
     "class Color(str, enum.Enum):\n    RED = 'red'\n    GREEN = 'green'\n    BLUE = 'blue'",
     {("enum-value-added", C)}),
    ("enum value added to a received enum",
     API + "def a(self) -> Color: ...",
     API + "def a(self) -> Color: ...\n---\n"
     "class Color(str, enum.Enum):\n    RED = 'red'\n    GREEN = 'green'\n    BLUE = 'blue'",
     {("enum-value-added", W)}),
    ("enum value removed from a sent enum",
     API + "def a(self, c: Color) -> int: ...",
     API + "def a(self, c: Color) -> int: ...\n---\nclass Color(str, enum.Enum):\n    RED = 'red'",
     {("enum-value-removed", W)}),
    ("enum value removed from a received enum",
     API + "def a(self) -> Color: ...",
     API + "def a(self) -> Color: ...\n---\nclass Color(str, enum.Enum):\n    RED = 'red'",
     {("enum-value-removed", C)}),
    ("literal value added to a parameter",
     API + "def a(self, mode: Literal['fast', 'safe']) -> int: ...",
     API + "def a(self, mode: Literal['fast', 'safe', 'auto']) -> int: ...",
     {("literal-value-added", C)}),
    ("union arm removed from a parameter",
     API + "def a(self, x: int | str) -> int: ...",
     API + "def a(self, x: int) -> int: ...",
     {("type-changed", W)}),
    ("union arm added to a result",
     API + "def a(self) -> int | str: ...",
     API + "def a(self) -> int | str | bool: ...",
     {("union-value-added", W)}),
    ("input constraint tightened",
     API + "def a(self, n: Annotated[int, Field(gt=0)]) -> int: ...",
     API + "def a(self, n: Annotated[int, Field(gt=5)]) -> int: ...",
     {("constraint-tightened", W)}),
    ("input constraint loosened",
     API + "def a(self, n: Annotated[str, Field(max_length=5)]) -> int: ...",
     API + "def a(self, n: Annotated[str, Field(max_length=50)]) -> int: ...",
     {("constraint-loosened", C)}),
    ("output constraint loosened",
     API + "def a(self) -> Annotated[str, Field(max_length=5)]: ...",
     API + "def a(self) -> str: ...",
     {("constraint-loosened", W)}),
    ("pattern changed",
     API + "def a(self, s: Annotated[str, Field(pattern='^a')]) -> int: ...",
     API + "def a(self, s: Annotated[str, Field(pattern='^b')]) -> int: ...",
     {("constraint-changed", W)}),
    ("model renamed",
     API + "def a(self, item: Item) -> int: ...",
     API + "def a(self, item: Article) -> int: ...\n---\n"
     "class Article(pydantic.BaseModel):\n    sku: str\n    qty: int = 1",
     {("model-renamed", S)}),
    ("model swapped for another",
     API + "def a(self, item: Item) -> int: ...",
     API + "def a(self, item: Shared) -> int: ...",
     {("type-changed", W)}),
    ("field of a model sent and received changed",
     API + "def a(self, s: Shared) -> Shared: ...",
     API + "def a(self, s: Shared) -> Shared: ...\n---\nclass Shared(pydantic.BaseModel):\n    n: int | None",
     {("nullable-added", W)}),
    ("field changed inside a union arm",
     API + "def a(self, x: Item | Shared) -> int: ...",
     API + "def a(self, x: Item | Shared) -> int: ...\n---\nclass Shared(pydantic.BaseModel):\n    n: str",
     {("type-changed", W)}),
    ("event removed",
     "moved = lumi.event(Moved)\ngone = lumi.event(Moved)",
     "moved = lumi.event(Moved)",
     {("event-removed", W)}),
    ("event added",
     "moved = lumi.event(Moved)",
     "moved = lumi.event(Moved)\nback = lumi.event(Moved)",
     {("event-added", C)}),
    ("optional field added to an event payload",
     "moved = lumi.event(Moved)",
     "moved = lumi.event(Moved)\n---\nclass Moved(pydantic.BaseModel):\n    sku: str\n    why: str = ''",
     {("optional-field-added", C)}),
    ("required field added to an event payload",
     "moved = lumi.event(Moved)",
     "moved = lumi.event(Moved)\n---\nclass Moved(pydantic.BaseModel):\n    sku: str\n    why: str",
     {("required-field-added", W)}),
    ("event payload field made optional",
     "moved = lumi.event(Moved)",
     "moved = lumi.event(Moved)\n---\nclass Moved(pydantic.BaseModel):\n    sku: str = ''",
     {("required-to-optional", S)}),
    ("event partition key changed",
     "moved = lumi.event(Moved)",
     "moved = lumi.event(Moved, key='sku')",
     {("event-key-changed", W)}),
    ("idempotency removed",
     "@lumi.api(idempotent=True)\ndef a(self) -> int: ...",
     API + "def a(self) -> int: ...",
     {("idempotency-removed", W)}),
    ("idempotency added",
     API + "def a(self) -> int: ...",
     "@lumi.api(idempotent=True)\ndef a(self) -> int: ...",
     {("idempotency-added", C)}),
    ("no longer public",
     "@lumi.api(public=True)\ndef a(self) -> int: ...",
     API + "def a(self) -> int: ...",
     {("public-removed", W)}),
    ("made public",
     API + "def a(self) -> int: ...",
     "@lumi.api(public=True)\ndef a(self) -> int: ...",
     {("public-added", C)}),
    ("timeout hint changed",
     "@lumi.api(timeout=1)\ndef a(self) -> int: ...",
     "@lumi.api(timeout=5)\ndef a(self) -> int: ...",
     {("policy-changed", C)}),
    ("documentation changed",
     API + "def a(self) -> int:\n    'Old words.'",
     API + "def a(self) -> int:\n    'New words.'",
     {("doc-changed", C)}),
    ("nothing changed",
     API + "def a(self, item: Item) -> Receipt: ...",
     API + "def a(self, item: Item) -> Receipt: ...",
     set()),
]  # fmt: skip


def _split(body: str) -> tuple[str, str]:
    head, _, models = body.partition("\n---\n")
    return head, models


@pytest.mark.parametrize(
    ("old", "new", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_change_kinds_get_their_verdicts(
    old: str, new: str, expected: set[tuple[str, Level]]
) -> None:
    old_iface, new_iface = service(*_split(old)), service(*_split(new))
    found = {(c.kind, c.level) for c in diff_interfaces(old_iface, new_iface)}
    assert found == expected


def test_the_table_covers_at_least_25_kinds() -> None:
    kinds = {kind for case in CASES for kind, _ in case[3]}
    assert len(kinds) >= 25, sorted(kinds)
    assert {level for case in CASES for _, level in case[3]} == {W, S, C}


def _app(version: str, body: str) -> dict[str, lumi.ServiceInterface]:
    iface = service(body)
    return {"S": iface.model_copy(update={"version": version})}


BREAK = (
    API + "def a(self) -> int: ...\n" + API + "def b(self) -> int: ...",
    API + "def a(self) -> int: ...",
)


@pytest.mark.parametrize(
    ("old_version", "new_version", "body", "errors"),
    [
        ("1.2.3", "1.3.0", BREAK, ["needs at least 2.0.0"]),
        ("1.2.3", "2.0.0", BREAK, []),
        ("0.4.1", "0.4.2", BREAK, ["needs at least 0.5.0"]),
        ("0.4.1", "0.5.0", BREAK, []),
        ("1.2.3", "1.2.3", (BREAK[1], BREAK[0]), []),  # only an addition
        ("1.2.3", "1.2.2", (BREAK[1], BREAK[1]), ["version went down"]),
        ("1.2", "1.3", (BREAK[1], BREAK[1]), ["is not a semantic version"]),
    ],
)
def test_breaking_changes_need_a_major_bump(
    old_version: str, new_version: str, body: tuple[str, str], errors: list[str]
) -> None:
    old, new = _app(old_version, body[0]), _app(new_version, body[1])
    found = version_errors(old, new, diff_apps(old, new))
    assert len(found) == len(errors)
    for text, expected in zip(found, errors, strict=True):
        assert expected in text and text.startswith("S: ")


def test_allow_list_accepts_an_intended_break(tmp_path: Path) -> None:
    old, new = _app("1.0.0", BREAK[0]), _app("1.0.0", BREAK[1])
    file = tmp_path / "lumi-api-allow.toml"
    file.write_text(
        '[[allow]]\npath = "S.b"\nkind = "method-removed"\nreason = "b was never released"\n'
        '[[allow]]\npath = "S.zz*"\nreason = "stale"\n'
    )
    allow = load_allow_list(file)
    changes, unused = apply_allow_list(diff_apps(old, new), allow)
    assert [(c.kind, c.allowed, c.reason) for c in changes] == [
        ("method-removed", True, "b was never released")
    ]
    assert unused == [Allowance("S.zz*", "stale")]
    assert version_errors(old, new, changes) == []


def test_a_removed_service_is_an_error_unless_allowed() -> None:
    old = {**_app("1.0.0", BREAK[1]), "T": service(API + "def t(self) -> int: ...")}
    new = _app("1.0.0", BREAK[1])
    changes = diff_apps(old, new)
    assert [(c.service, c.kind, c.level) for c in changes] == [("T", "service-removed", W)]
    assert any("T: service removed" in e for e in version_errors(old, new, changes))
    allowed, _ = apply_allow_list(changes, [Allowance("T", "retired")])
    assert version_errors(old, new, allowed) == []
    assert [c.kind for c in diff_apps(new, old)] == ["service-added"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[allow]]\npath = "S.b"\n', "'reason' is required"),
        ('[[allow]]\npath = "S.b"\nreason = "x"\nwhy = "y"\n', "unknown key 'why'"),
        ("allowed = []\n", "unknown key 'allowed' (valid: allow)"),
        ("[[allow]\n", "not valid TOML"),
    ],
)
def test_a_bad_allow_list_names_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    file = tmp_path / "allow.toml"
    file.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_allow_list(file)
