"""Code generation: golden files, determinism, stable numbering, and the lumi gen CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lumi
from lumi.codegen import get_generator, targets
from lumi.codegen.base import GenerateRequest
from lumi.codegen.schema import Type, type_of
from tests.conftest import ROOT, SHOP

GOLDEN = ROOT / "tests" / "golden" / "shop"


def lumi_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lumi.cli.main", *args], capture_output=True, text=True, timeout=120
    )


def test_golden_files_match_the_example_app() -> None:
    """Every target's output for examples/shop equals the committed golden files."""
    result = lumi_cli("gen", "all", "--app", str(SHOP), "--out", str(GOLDEN), "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "up to date" in result.stdout
    assert {p.name for p in GOLDEN.iterdir()} == set(targets())


def _pythonpath() -> dict[str, str]:
    """The caller's PYTHONPATH, if any, so the child imports the same Lumi."""
    return {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}


def test_output_is_deterministic() -> None:
    """Two runs in separate processes (different hash seeds) give byte-identical files."""
    code = (
        "import json, sys; sys.path.insert(0, 'examples/shop');"
        "from lumi.config import load_config; from lumi.model.interface import interface;"
        "from lumi.codegen import get_generator, targets; from lumi.codegen.base import GenerateRequest;"
        "c = load_config('examples/shop'); i = [interface(s) for s in c.load_services()];"
        "print(json.dumps({t: get_generator(t).generate(GenerateRequest(i)) for t in targets()}))"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
            env={"PYTHONHASHSEED": str(seed), "PATH": "/usr/bin:/bin", **_pythonpath()},
        ).stdout
        for seed in (1, 2)
    ]  # fmt: skip
    assert runs[0] == runs[1] and set(json.loads(runs[0])) == set(targets())


def _iface(fields: dict[str, type]) -> lumi.ServiceInterface:
    from pydantic import create_model

    model = create_model("Item", **{name: (tp, ...) for name, tp in fields.items()})  # type: ignore[call-overload]

    def get(self: object) -> model:  # type: ignore[valid-type]
        raise NotImplementedError

    get.__annotations__ = {"return": model}
    service = type("Shelf", (lumi.Service,), {"get": lumi.api(get)})
    return lumi.interface(service)


@pytest.mark.parametrize("target", ["proto", "thrift"])
def test_field_numbers_are_stable_and_removed_fields_reserved(target: str) -> None:
    """New fields are appended, removed ones reserved, existing numbers never move."""
    generator = get_generator(target)
    first = generator.generate(GenerateRequest([_iface({"a": int, "b": str, "c": bool})]))
    lock = json.loads(first["lumi.lock.json"])
    second = generator.generate(
        GenerateRequest([_iface({"a": int, "c": bool, "d": float})], lock=lock)
    )
    text = second[f"shelf.{target}"]
    if target == "proto":
        assert "int64 a = 1;" in text and "bool c = 3;" in text and "double d = 4;" in text
        assert "reserved 2;" in text and 'reserved "b";' in text
    else:
        assert "1: required i64 a," in text and "3: required bool c," in text
        assert "4: required double d," in text and " b," not in text
    lock2 = json.loads(second["lumi.lock.json"])
    item = next(v for k, v in lock2[target].items() if k.endswith(".Item"))
    assert item == {"fields": {"a": 1, "c": 3, "d": 4}, "reserved": {"b": 2}}
    third = generator.generate(GenerateRequest([_iface({"a": int, "b": str})], lock=lock2))
    item3 = next(
        v for k, v in json.loads(third["lumi.lock.json"])[target].items() if k.endswith(".Item")
    )
    assert item3["fields"]["b"] == 5, "a re-added name gets a new number, never a reserved one"


def test_type_model_reads_pydantic_schemas() -> None:
    """The shared type model understands every schema shape Lumi produces."""
    assert type_of({"anyOf": [{"type": "integer"}, {"type": "null"}]}) == Type(
        "integer", nullable=True
    )
    assert type_of({"type": "string", "format": "base64url"}).kind == "bytes"
    assert type_of({"type": "string", "format": "date-time"}).kind == "datetime"
    assert type_of({"type": "object", "additionalProperties": {"type": "number"}}) == Type(
        "map", item=Type("number")
    )
    assert type_of({"enum": ["a", "b"], "type": "string"}) == Type("literal", values=("a", "b"))
    union = type_of({"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}]})
    assert union.kind == "union" and union.nullable and len(union.variants) == 2
    assert type_of({"$ref": "#/$defs/Order"}) == Type("ref", ref="Order")


def test_gen_check_reports_drift_and_cli_errors(tmp_path: Path) -> None:
    """--check exits 1 naming stale files; a bad target or service is one line."""
    out = tmp_path / "gen"
    assert lumi_cli("gen", "openapi", "--app", str(SHOP), "--out", str(out)).returncode == 0
    (out / "Orders.openapi.json").write_text("{}")
    (out / "Catalog.openapi.json").unlink()
    result = lumi_cli("gen", "openapi", "--app", str(SHOP), "--out", str(out), "--check")
    assert result.returncode == 1
    assert f"stale: {out / 'Orders.openapi.json'} (differs)" in result.stdout
    assert f"stale: {out / 'Catalog.openapi.json'} (missing)" in result.stdout
    bad = lumi_cli("gen", "protobuf", "--app", str(SHOP))
    assert bad.returncode == 1 and bad.stderr.startswith(
        "error: unknown target 'protobuf'; did you mean 'proto'?"
    )
    bad_service = lumi_cli("gen", "proto", "Ordres", "--app", str(SHOP), "--out", str(out))
    assert "error: no service 'Ordres'; did you mean 'Orders'?" in bad_service.stderr


def test_gen_reads_interface_json_alone(tmp_path: Path) -> None:
    """lumi gen works from interface JSON files, with no Python class at hand."""
    sys.path.insert(0, str(SHOP))
    from shop.orders import Orders

    file = tmp_path / "orders.json"
    file.write_text(lumi.interface(Orders).to_json())
    out = tmp_path / "out"
    result = lumi_cli("gen", "proto", "--interface", str(file), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert (out / "orders.proto").read_text() == (
        GOLDEN / "proto" / "orders.proto"
    ).read_text().replace("package shop.orders;", "package lumi.orders;")
    broken = tmp_path / "broken.json"
    broken.write_text('{"methods": 1}')
    bad = lumi_cli("gen", "proto", "--interface", str(broken), "--out", str(out))
    assert bad.returncode == 1 and bad.stderr.startswith(f"error: {broken}: not a Lumi interface")


def test_free_text_docstrings_stay_inside_comments() -> None:
    """Quotes, comment terminators, NULs and odd line breaks in docs cannot break generated code."""
    doc = 'Says "hi"\x00 and */ ends\u2028here \\ "'

    class Noisy(lumi.Service):
        @lumi.api
        def ping(self) -> str:
            return "pong"

    Noisy.__doc__ = doc
    Noisy.ping.__doc__ = doc
    iface = lumi.interface(Noisy)
    files = {
        target: get_generator(target).generate(GenerateRequest([iface]))
        for target in ("proto", "thrift", "python-client", "typescript-client")
    }
    for target, generated in files.items():
        for name, text in generated.items():
            assert "\x00" not in text and "\u2028" not in text, (target, name)
    for name, text in files["python-client"].items():
        if name.endswith(".py"):
            compile(text, name, "exec")  # a syntax error here fails the test
    proto = next(t for n, t in files["proto"].items() if n.endswith(".proto"))
    assert '// Says "hi"  and */ ends' in proto and "// here \\" in proto
