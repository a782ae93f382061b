"""The descriptors the gRPC server builds in-process equal what protoc compiles from the
``.proto`` text ``lumi gen proto`` writes: same messages, numbers, labels, json names, map
entries, synthetic oneofs, reserved ranges, services and options."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import grpc_tools
import pytest
from google.protobuf import descriptor_pb2
from hypothesis import given

import lumi
from lumi.codegen.base import LOCK_FILE
from lumi.codegen.proto import proto_schema
from lumi.codegen.schema import snake
from lumi.model.interface import ServiceInterface
from tests.conformance.rpc_services import Echo, Hop1, Hop2, Hop3
from tests.conftest import SHOP
from tests.interop import tools
from tests.interop.test_codegen_properties import BATCH, SETTINGS, interfaces
from tests.unit.everything import Everything

pytestmark = pytest.mark.slow

sys.path.insert(0, str(SHOP))
from shop.catalog import Catalog  # noqa: E402
from shop.inventory import Inventory  # noqa: E402
from shop.mailer import Mailer  # noqa: E402
from shop.orders import Orders  # noqa: E402

FIXED = [Catalog, Inventory, Orders, Mailer, Everything, Echo, Hop1, Hop2, Hop3]
WELL_KNOWN = Path(grpc_tools.__file__).parent / "_proto"


def compiled(out: Path, iface: ServiceInterface) -> descriptor_pb2.FileDescriptorProto:
    """What protoc makes of the generated file (no source info)."""
    name = f"{snake(iface.name)}.proto"
    target = out / f"{snake(iface.name)}.bin"
    tools.run([sys.executable, "-m", "grpc_tools.protoc", "-I.", f"-I{WELL_KNOWN}",
               f"--descriptor_set_out={target}", name], cwd=out)  # fmt: skip
    files = descriptor_pb2.FileDescriptorSet.FromString(target.read_bytes())
    return files.file[0]


def check(out: Path, found: list[ServiceInterface], package: str = "lumi") -> None:
    lock = (
        json.loads((out / LOCK_FILE).read_text()).get("proto")
        if (out / LOCK_FILE).exists()
        else None
    )
    for iface in found:
        built = proto_schema(iface, package, lock).descriptor
        expected = compiled(out, iface)
        assert built == expected, f"{iface.name}:\n{built}\n!=\n{expected}"


def test_descriptors_equal_protoc_for_known_services(tmp_path: Path) -> None:
    """The shop, a service of every type and the conformance services."""
    found = [lumi.interface(s) for s in FIXED]
    tools.generate("proto", found, tmp_path, package="shop")
    check(tmp_path, found, package="shop")


def test_descriptors_keep_lock_numbers_and_reserved_fields(tmp_path: Path) -> None:
    """With a lock where a field was removed, the served descriptor has the same reserved
    range and name protoc reads from the file, and the lock's numbers."""
    iface = lumi.interface(Echo)
    lock = {
        "proto": {"lumi.echo.Payload": {"fields": {"old_field": 1, "text": 40}, "reserved": {}}}
    }
    (tmp_path / LOCK_FILE).write_text(json.dumps(lock))
    from lumi.codegen import get_generator
    from lumi.codegen.base import GenerateRequest

    files = get_generator("proto").generate(GenerateRequest([iface], lock=lock))
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert "reserved 1;" in files["echo.proto"] and "string text = 40;" in files["echo.proto"]
    check(tmp_path, [iface])


@SETTINGS
@given(batch=BATCH)
def test_descriptors_equal_protoc_for_random_services(
    tmp_path_factory: pytest.TempPathFactory, batch: tuple[type[lumi.Service], ...]
) -> None:
    """Random valid services: the in-process descriptors equal protoc's, every time."""
    found = interfaces(batch)
    out = tmp_path_factory.mktemp("descriptors")
    tools.generate("proto", found, out)
    check(out, found)
