"""The interface hub: reflection, canonical JSON round trip, fingerprints, JSON-only clients."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pydantic

import lumi
from lumi.pipeline.client import Client
from lumi.pipeline.dispatch import Dispatcher
from lumi.transports.local import LocalChannel
from tests.unit.everything import Everything

HERE = Path(__file__).resolve().parent


def test_interface_round_trips_through_json_without_loss() -> None:
    """to_json → from_json gives an equal interface with identical text and fingerprint."""
    iface = lumi.interface(Everything)
    text = iface.to_json()
    again = lumi.ServiceInterface.from_json(text)
    assert again == iface
    assert again.to_json() == text
    assert again.fingerprint == iface.fingerprint
    assert again.to_dict() == json.loads(text)


def test_interface_json_is_canonical() -> None:
    """Keys are sorted and there is no whitespace, so the text is stable."""
    text = lumi.interface(Everything).to_json()
    assert text == json.dumps(
        json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def test_interface_describes_every_part() -> None:
    """Methods, params, returns, events, versions, docs and sensitive params are present."""
    iface = lumi.interface(Everything)
    assert iface.name == "Everything" and iface.version == "1.2.3"
    assert iface.doc == "Uses every type Lumi supports."
    assert sorted(iface.methods) == [
        "blob", "choose", "geometry", "nothing", "people", "scalars", "times", "union",
    ]  # fmt: skip
    scalars = iface.methods["scalars"]
    assert scalars.param_names == ["b", "i", "f", "s", "raw", "nothing"]
    props = scalars.params["properties"]
    assert props["raw"]["format"] == "base64url"
    assert props["i"]["type"] == "integer" and props["f"]["type"] == "number"
    assert scalars.params["additionalProperties"] is False
    assert iface.methods["geometry"].sensitive == ["secret"]
    assert iface.events["changed"].payload == {"$ref": "#/$defs/Changed"}
    assert {"Person", "Address", "Changed", "Point", "Mood", "Level"} <= set(iface.defs)
    assert iface.methods["nothing"].returns == {"type": "null"}


def test_self_contained_schema_validates_like_the_server() -> None:
    """schema() attaches $defs so a fragment is usable alone."""
    iface = lumi.interface(Everything)
    schema = iface.standalone(iface.methods["people"].params)
    assert "$defs" in schema and schema["properties"]["person"] == {"$ref": "#/$defs/Person"}


def _fingerprint_in_subprocess() -> str:
    code = (
        "import lumi; from tests.unit.everything import Everything; "
        "print(lumi.interface(Everything).fingerprint)"
    )
    root = HERE.parent.parent
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True,
        env={"PYTHONHASHSEED": "random", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    return out.stdout.strip()


def test_fingerprint_is_stable_across_processes() -> None:
    """Two fresh interpreters (different hash seeds) compute the same fingerprint."""
    first, second = _fingerprint_in_subprocess(), _fingerprint_in_subprocess()
    assert first == second == lumi.interface(Everything).fingerprint
    assert first.startswith("sha256:") and len(first) == 7 + 64


def test_any_change_changes_the_fingerprint() -> None:
    """A new method, a changed type, a doc or a version bump each give a new fingerprint."""

    def make(version: str = "0.1.0", doc: str = "d", ret: type = int, extra: bool = False) -> str:
        def m(self: object, a: int) -> object:
            return a

        m.__annotations__ = {"a": int, "return": ret}
        members: dict[str, object] = {"__doc__": doc, "version": version, "m": lumi.api(m)}
        if extra:
            members["n"] = lumi.api(lambda self: None)
            members["n"].__annotations__ = {"return": None}  # type: ignore[attr-defined]
        service = type("S", (lumi.Service,), members)
        return lumi.interface(service).fingerprint

    base = make()
    assert make() == base
    assert (
        len({base, make(version="0.2.0"), make(doc="other"), make(ret=str), make(extra=True)}) == 5
    )


async def test_client_built_from_json_alone_calls_the_service() -> None:
    """A client made only from the interface JSON calls methods and gets plain JSON back."""
    text = lumi.interface(Everything).to_json()
    dispatcher = Dispatcher()
    dispatcher.add(Everything())
    client = Client(lumi.ServiceInterface.from_json(text), LocalChannel(dispatcher.handle).call)
    result = await client.people(
        person={"name": "ada", "age": 36}, others=[], by_name={"x": {"name": "x", "age": 1}}
    )
    assert result == {"name": "ada", "age": 36, "addresses": [], "avatar": None, "tags": {}}
    assert await client.blob(data=b"\x00\x01\xff") == "_wEA"  # base64url of the reversed bytes
    assert await client.call("choose", mood="happy", level=2, kind="a") == "happy"


async def test_typed_client_returns_declared_types() -> None:
    """A client made from the class validates results into the declared return types."""
    dispatcher = Dispatcher()
    dispatcher.add(Everything())
    client = Client.for_service(Everything, LocalChannel(dispatcher.handle).call)
    person = await client.people(person={"name": "ada", "age": 36}, others=[], by_name={})
    assert isinstance(person, pydantic.BaseModel) and person.name == "ada"  # type: ignore[attr-defined]
    assert await client.blob(b"abc") == b"cba"
    assert (await client.geometry({"x": 1.0, "y": 2.0}, 3)).y == 6.0
