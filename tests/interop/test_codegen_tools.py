"""Generated files are accepted by tools Lumi did not write, and generated clients work."""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import lumi
from lumi.transports.base import ServerSettings
from lumi.transports.http import HttpServer
from tests.conftest import SHOP
from tests.interop import tools
from tests.unit.everything import Everything

pytestmark = pytest.mark.slow

sys.path.insert(0, str(SHOP))
from shop.catalog import Catalog  # noqa: E402
from shop.inventory import Inventory  # noqa: E402
from shop.mailer import Mailer  # noqa: E402
from shop.orders import Orders  # noqa: E402

SERVICES = [Catalog, Inventory, Orders, Mailer, Everything]
INTERFACES = [lumi.interface(s) for s in SERVICES]


def test_proto_compiles_with_protoc_and_matches_the_json_wire(tmp_path: Path) -> None:
    """protoc compiles every .proto; the stubs import; Lumi's JSON parses into the messages."""
    tools.generate("proto", INTERFACES, tmp_path)
    tools.protoc(tmp_path)
    sys.path.insert(0, str(tmp_path))
    try:
        orders_pb2 = importlib.import_module("orders_pb2")
        importlib.import_module("orders_pb2_grpc")
        everything_pb2 = importlib.import_module("everything_pb2")
        from google.protobuf import json_format

        wire = {"id": "o1", "customer": "ada", "lines": [{"sku": "pear", "qty": 2}],
                "total_cents": 150, "placed_at": "2026-01-02T03:04:05Z"}  # fmt: skip
        order = json_format.Parse(json.dumps(wire), orders_pb2.Order())
        assert order.total_cents == 150 and order.lines[0].qty == 2
        assert order.placed_at.seconds > 0
        assert (
            json_format.MessageToDict(order, preserving_proto_field_name=False)["total_cents"]
            == "150"
        )
        person = json_format.Parse(
            '{"name": "a", "age": 3, "avatar": "_wEA"}', everything_pb2.Person()
        )
        assert person.avatar == b"\xff\x01\x00"
        assert "Place" in orders_pb2.DESCRIPTOR.services_by_name["Orders"].methods_by_name
    finally:
        sys.path.remove(str(tmp_path))


def test_thrift_compiles_and_loads_in_thriftpy2(tmp_path: Path) -> None:
    """The Apache Thrift compiler accepts every .thrift, and thriftpy2 loads them."""
    import thriftpy2

    tools.generate("thrift", INTERFACES, tmp_path)
    tools.thrift(tmp_path)
    module = thriftpy2.load(str(tmp_path / "orders.thrift"), module_name="orders_thrift")
    assert module.ErrorCode.NOT_FOUND == 5
    assert set(module.Orders.thrift_services) == {"get", "place"}
    line = module.OrderLine(qty=2, sku="pear")
    assert (line.qty, line.sku) == (2, "pear")
    everything = thriftpy2.load(
        str(tmp_path / "everything.thrift"), module_name="everything_thrift"
    )
    assert everything.Level.LEVEL_2 == 2


def test_openapi_passes_the_validator(tmp_path: Path) -> None:
    """openapi-spec-validator accepts each service's OpenAPI 3.1 document."""
    from openapi_spec_validator import validate

    for path in tools.generate("openapi", INTERFACES, tmp_path):
        document = json.loads(path.read_text())
        validate(document)
        assert document["openapi"] == "3.1.0"
    orders = json.loads((tmp_path / "Orders.openapi.json").read_text())
    place = orders["paths"]["/Orders/place"]["post"]
    assert place["requestBody"]["content"]["application/json"]["schema"]["required"] == [
        "customer",
        "lines",
    ]
    assert place["responses"]["404"] == {"$ref": "#/components/responses/Error404"}


def test_asyncapi_passes_the_official_parser(tmp_path: Path) -> None:
    """@asyncapi/parser accepts the AsyncAPI 3.0 document of the shop's events."""
    files = tools.generate("asyncapi", INTERFACES, tmp_path)
    tools.asyncapi(files)
    document = json.loads(files[0].read_text())
    assert document["operations"]["Mailer.on_placed"]["action"] == "receive"
    assert document["operations"]["Orders.publish.placed"]["action"] == "send"


def test_jsonschema_files_validate_real_payloads(tmp_path: Path) -> None:
    """Each generated schema is a valid 2020-12 schema that accepts what Lumi sends."""
    import jsonschema

    tools.generate("jsonschema", INTERFACES, tmp_path)
    for path in tmp_path.rglob("*.schema.json"):
        jsonschema.Draft202012Validator.check_schema(json.loads(path.read_text()))
    placed = json.loads((tmp_path / "Orders" / "events" / "placed.schema.json").read_text())
    jsonschema.validate({"order_id": "o", "customer": "c", "total_cents": 1}, placed)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"order_id": "o"}, placed)


def test_typescript_client_type_checks(tmp_path: Path) -> None:
    """tsc --strict accepts every generated TypeScript client."""
    tools.tsc(tools.generate("typescript-client", INTERFACES, tmp_path))


@pytest.fixture
async def served() -> AsyncIterator[str]:
    """The shop and Everything served over HTTP by Lumi."""
    async with lumi.App([Catalog, Inventory, Orders, Mailer, Everything]) as app:
        interfaces = {i.name: i for i in INTERFACES}
        server = HttpServer(app.host.dispatcher.handle, ServerSettings(interfaces=interfaces))
        await server.start()
        try:
            yield server.endpoint
        finally:
            await server.aclose()


async def test_generated_python_client_calls_a_running_service(tmp_path: Path, served: str) -> None:
    """The generated package, without the service's code, gets typed results and typed errors."""
    tools.generate("python-client", INTERFACES, tmp_path)
    sys.path.insert(0, str(tmp_path))
    try:
        orders_client = importlib.import_module("orders_client")
        everything_client = importlib.import_module("everything_client")
        errors = importlib.import_module("catalog_client.errors")
        catalog_client = importlib.import_module("catalog_client")
        async with orders_client.AsyncOrdersClient(served) as client:
            line = orders_client.OrderLine(sku="apple", qty=2)
            order = await client.place(customer="ada", lines=[line])
            assert type(order).__module__ == "orders_client.models" and order.total_cents == 100
            assert (await client.get(order_id=order.id)).customer == "ada"
        async with everything_client.AsyncEverythingClient(served) as client:
            assert await client.blob(data=b"\x00\x01\xff") == b"\xff\x01\x00"
            mood = await client.choose(mood=everything_client.Mood.GRUMPY, level=2, kind="a")
            assert mood is everything_client.Mood.GRUMPY
        with catalog_client.CatalogClient(served) as sync_client:
            products = await asyncio.to_thread(sync_client.products)
            assert [p.sku for p in products] == ["apple", "melon", "pear"]
            with pytest.raises(errors.NotFound, match="no product 'kiwi'"):
                await asyncio.to_thread(sync_client.product, sku="kiwi")
    finally:
        sys.path.remove(str(tmp_path))


async def test_generated_typescript_client_calls_a_running_service(
    tmp_path: Path, served: str
) -> None:
    """Compiled with tsc and run by node, the TypeScript client talks to Lumi."""
    tools.generate("typescript-client", INTERFACES, tmp_path / "src")
    script = tmp_path / "src" / "main.ts"
    script.write_text(
        'import { OrdersClient, LumiError } from "./orders.js";\n'
        'import { CatalogClient } from "./catalog.js";\n'
        "const base = process.argv[2];\n"
        'const order = await new OrdersClient(base).place({ customer: "ts", lines: [{ sku: "pear", qty: 1 }] });\n'
        "let error: LumiError | null = null;\n"
        'try { await new CatalogClient(base).product({ sku: "kiwi" }); } catch (e) { error = e as LumiError; }\n'
        "console.log(JSON.stringify({ total: order.total_cents, code: error?.code, status: error?.status }));\n"
    )
    (tmp_path / "src" / "node.d.ts").write_text("declare const process: { argv: string[] };\n")
    tools.tsc(sorted((tmp_path / "src").glob("*.ts")), out_dir=tmp_path / "js")
    (tmp_path / "js" / "package.json").write_text('{"type": "module"}')
    node = tools.require("node", "apt-get install nodejs")
    proc = await asyncio.create_subprocess_exec(
        node, str(tmp_path / "js" / "main.js"), served,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert json.loads(out) == {"total": 75, "code": "NOT_FOUND", "status": 404}
