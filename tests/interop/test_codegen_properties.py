"""Property: interfaces of random valid services generate files every tool accepts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import lumi
from tests.interop import tools
from tests.interop.random_services import services

pytestmark = pytest.mark.slow

# Each example is a batch of services, so each tool runs once per batch and the suite stays fast.
BATCH = st.tuples(*(services(f"Svc{i}") for i in range(8)))
SETTINGS = settings(
    max_examples=4,
    deadline=None,
    derandomize=True,
    # No explain phase: its line tracer makes shrinking a failing batch outlast the test timeout.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)


def interfaces(batch: tuple[type[lumi.Service], ...]) -> list[lumi.ServiceInterface]:
    found = [lumi.interface(service) for service in batch]
    for iface in found:  # the hub value round-trips, whatever the service
        assert lumi.ServiceInterface.from_json(iface.to_json()) == iface
    return found


@SETTINGS
@given(batch=BATCH)
def test_random_interfaces_compile_with_protoc_and_thrift(
    tmp_path_factory: pytest.TempPathFactory, batch: tuple[type[lumi.Service], ...]
) -> None:
    """protoc and the Thrift compiler accept what random interfaces generate."""
    found = interfaces(batch)
    out: Path = tmp_path_factory.mktemp("gen")
    tools.generate("proto", found, out / "proto")
    tools.protoc(out / "proto")
    tools.generate("thrift", found, out / "thrift")
    tools.thrift(out / "thrift")


@SETTINGS
@given(batch=BATCH)
def test_random_interfaces_give_valid_openapi_asyncapi_and_typescript(
    tmp_path_factory: pytest.TempPathFactory, batch: tuple[type[lumi.Service], ...]
) -> None:
    """openapi-spec-validator, @asyncapi/parser and tsc accept what random interfaces generate."""
    from openapi_spec_validator import validate

    found = interfaces(batch)
    out: Path = tmp_path_factory.mktemp("gen")
    for path in tools.generate("openapi", found, out / "openapi"):
        validate(json.loads(path.read_text()))
    tools.asyncapi(tools.generate("asyncapi", found, out / "asyncapi"))
    tools.tsc(tools.generate("typescript-client", found, out / "ts"))
