"""A type Lumi cannot send fails the ``class`` statement itself (as the README says), naming
service, member and parameter; names not defined yet are left to reflection."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Annotated

import pytest
from pydantic import BaseModel, Field

import lumi


def test_a_set_parameter_fails_when_the_class_is_defined() -> None:
    """``set[int]`` is refused by the class statement, before any interface is built."""
    with pytest.raises(lumi.DefinitionError) as info:

        class Tags(lumi.Service):
            @lumi.api
            async def tag(self, ids: set[int]) -> int:
                return len(ids)

    message = str(info.value)
    assert message.startswith("Tags.tag: parameter 'ids' has type set[int]"), message
    assert message.endswith("use list[T] instead")


class Bad(BaseModel):
    points: tuple[int, int]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (
            "@lumi.api(name='get')\ndef fetch(self) -> tuple[int, str]: ...",
            "S.get: return value",
        ),
        ("@lumi.api\ndef f(self, x: Bad) -> None: ...", "S.f: parameter 'x' -> Bad.points"),
        ("happened = lumi.event(Bad)", "S.happened: event payload -> Bad.points"),
        (
            "@lumi.subscribe('Other.happened')\nasync def on(self, event: frozenset[str]) -> None: ...",
            "S.on: parameter 'event'",
        ),
    ],
)
def test_results_models_events_and_handlers_are_checked_too(body: str, where: str) -> None:
    """Results, model fields, event payloads and handler payloads fail at class creation."""
    source = "class S(lumi.Service):\n" + textwrap.indent(body, "    ")
    with pytest.raises(lumi.DefinitionError, match="which Lumi cannot send") as info:
        exec(source, {"lumi": lumi, "Bad": Bad})
    assert str(info.value).startswith(where), str(info.value)


def test_a_name_defined_later_in_the_module_is_checked_by_reflection(tmp_path: Path) -> None:
    """An annotation naming a class further down the module does not break the class
    statement; when it is a bad type, reflection reports it."""
    module = tmp_path / "later_mod.py"
    module.write_text(
        "from __future__ import annotations\n"
        "import lumi\n"
        "class S(lumi.Service):\n"
        "    @lumi.api\n"
        "    async def f(self, x: Later) -> Later: ...\n"
        "Later = set[int]\n"
    )
    namespace: dict[str, object] = {}
    exec(compile(module.read_text(), str(module), "exec"), namespace)
    service = namespace["S"]
    with pytest.raises(lumi.DefinitionError, match=r"S.f: parameter 'x' has type set\[int\]"):
        lumi.interface(service)  # type: ignore[arg-type]


def test_good_declarations_still_define_and_reflect() -> None:
    """JSON-like types and Annotated constraints pass, and keep their constraints."""

    class Good(lumi.Service):
        @lumi.api
        async def f(
            self, n: Annotated[int, Field(gt=0)], tags: list[str] | None = None
        ) -> dict[str, int]:
            return {"n": n}

    assert lumi.interface(Good).methods["f"].params["properties"]["n"]["exclusiveMinimum"] == 0
