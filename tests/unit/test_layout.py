"""The architecture as the tree shows it: light imports at the top, registries per axis."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lumi.backends import BROKERS, GENERATORS, RUNTIMES, TRANSPORTS, Backend, Registry

HEAVY = ("lumi.transports.", "lumi.brokers.", "lumi.runtimes.", "opentelemetry.sdk", "structlog",
         "aiohttp", "prometheus_client")  # fmt: skip


def imported_by(statement: str) -> list[str]:
    """Every module a fresh interpreter imports to run ``statement`` (python -X importtime)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line]


@pytest.mark.parametrize(
    "statement", ["import lumi", "import lumi.model.types", "import lumi.pytest_plugin"]
)
def test_importing_lumi_stays_light(statement: str) -> None:
    """No transport, broker, runtime, OTel SDK, structlog or aiohttp is loaded by these."""
    modules = imported_by(statement)
    assert "lumi" in modules
    heavy = [m for m in modules if m.startswith(HEAVY) or m in HEAVY]
    assert heavy == []


def test_public_attributes_load_on_first_use() -> None:
    """lumi.App is there when asked for, and only then pulls in the runtime."""
    code = "import sys, lumi; before = 'lumi.runtimes.app' in sys.modules; lumi.App; print(before, 'lumi.runtimes.app' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split() == ["False", "True"], result.stderr


def test_every_axis_has_a_registry_of_its_builtins() -> None:
    """The registries name the built-in backends of every axis, each shipped one importable."""
    assert TRANSPORTS.names()[0] == "http"
    assert BROKERS.names()[:2] == ["embedded", "memory"]
    assert RUNTIMES.names()[:2] == ["process", "inproc"]
    assert "proto" in GENERATORS.names()
    for registry in (TRANSPORTS, BROKERS, RUNTIMES, GENERATORS):
        for name in registry.builtins:
            if name in registry.names():
                assert registry.load(name).__name__


def test_registry_explains_what_cannot_load() -> None:
    """Unknown names get a suggestion; unshipped modules and missing libraries say what to do."""
    registry = Registry(
        "widget",
        "lumi.test-widgets",
        [
            Backend("plain", "lumi.backends:Registry"),
            Backend("future", "lumi.widgets.future:Future"),
            Backend("fancy", "lumi.backends:Registry", "fancy", ("no_such_library_xyz",)),
        ],
    )
    assert registry.names() == ["plain", "fancy"]
    with pytest.raises(ValueError, match=r"unknown widget 'plian'; did you mean 'plain'\? \(valid"):
        registry.check("plian")
    with pytest.raises(ValueError, match="the future widget is not available in this version"):
        registry.check("future")
    with pytest.raises(
        ValueError, match=r"needs no_such_library_xyz: pip install 'lumi-runtime\[fancy\]'"
    ):
        registry.check("fancy")
    assert registry.load("plain") is Registry


def test_plugin_backends_come_from_entry_points() -> None:
    """The toy distribution's backends are registered by entry points alone."""
    assert "jsonl" in TRANSPORTS.names() and "jsonl" not in TRANSPORTS.builtins
    assert "toy" in BROKERS.names() and "thread" in RUNTIMES.names()
    assert TRANSPORTS.load("jsonl").__module__ == "lumi_toy_plugins.jsonl_transport"


def test_a_replica_loads_neither_prometheus_client_nor_the_opentelemetry_sdk() -> None:
    """Neither a replica's imports (the template's preloads included) nor a scrape of its
    /metrics load prometheus-client (~2 MiB of every replica's RSS): Lumi writes the text
    format itself. The OpenTelemetry SDK (~1 MiB) is not loaded either
    (``test_tracing.py`` shows when it is), nor difflib (did-you-mean hints load it)."""
    code = (
        "import importlib, sys, lumi.runtimes.zygote as z, lumi.runtimes.replica\n"
        "[importlib.import_module(m) for m in z._PRELOAD]\n"
        "from lumi.runtime_services.observability.metrics import Metrics\n"
        "m = Metrics(); m.request('A', 'b', 'OK', 0.01)\n"
        'print(b\'lumi_requests_total{code="OK",method="b",service="A"} 1.0\' in m.render())\n'
        "print('prometheus_client' in sys.modules)\n"
        "print(any(m.startswith('opentelemetry.sdk') for m in sys.modules))\n"
        "print('difflib' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split() == ["True", "False", "False", "False"], result.stderr
