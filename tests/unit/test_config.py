"""Configuration: lumi.toml and [tool.lumi], environments, and one clear error per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

import lumi
from lumi.config import load_config
from tests.conftest import SHOP


def write(tmp_path: Path, text: str, name: str = "lumi.toml") -> Path:
    (tmp_path / name).write_text(text)
    return tmp_path


BASE = """
[app]
name = "t"
services = ["svc:A"]
"""


def test_example_config_loads_with_and_without_env() -> None:
    """The shop's config loads; the test environment overrides the defaults."""
    config = load_config(SHOP)
    assert config.name == "shop" and config.environments == (
        "containers",
        "grpc",
        "local",
        "mixed",
        "mtls",
        "prod",
        "staging",
        "test",
        "thrift",
    )
    assert config.defaults.events == "embedded" and config.service("Catalog").replicas == 2
    test = load_config(SHOP, env="test")
    assert test.defaults.events == "memory" and test.defaults.runtime == "inproc"
    assert test.defaults.rpc == ["http"] and test.service("Catalog").replicas == 2
    assert [c.name for c in test.load_services()] == ["Catalog", "Inventory", "Orders", "Mailer"]
    mixed = load_config(SHOP, env="mixed")
    assert mixed.binding("Catalog").rpc == ["thrift"] and mixed.service("Catalog").replicas == 2
    assert mixed.binding("Orders").rpc == ["http", "grpc", "thrift"]
    assert load_config(SHOP, env="grpc").binding("Mailer").rpc == ["grpc"]


def test_pyproject_tool_lumi_is_read(tmp_path: Path) -> None:
    """[tool.lumi] in pyproject.toml works like lumi.toml."""
    write(
        tmp_path,
        '[project]\nname="x"\n[tool.lumi.app]\nname = "p"\nservices = ["m:S"]\n',
        "pyproject.toml",
    )
    assert load_config(tmp_path).name == "p"


def test_binding_merges_service_over_defaults(tmp_path: Path) -> None:
    """A service's own rpc/events/runtime override the defaults."""
    write(tmp_path, BASE + '[defaults]\nrpc = ["http"]\n[services.A]\nruntime = "inproc"\n')
    binding = load_config(tmp_path).binding("A")
    assert binding.rpc == ["http"] and binding.runtime == "inproc" and binding.events == "embedded"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "[defaults]\nrcp = 'http'\n",
            "defaults.rcp: unknown key; did you mean 'rpc'? (valid keys here: body_timeout, events, expose_errors, grace_period, header_timeout, host, log_level, max_body, pool_size, rpc, runtime, start_timeout, strict, threads)",
        ),
        (
            "[defaults]\nrpc = 'grcp'\n",
            "defaults.rpc: unknown RPC transport 'grcp'; did you mean 'grpc'? (valid: http",
        ),
        ("[defaults]\nevents = 'kafak://x:1'\n", "defaults.events: unknown event broker 'kafak'"),
        (
            "[defaults]\nruntime = 'docker'\n",
            "defaults.runtime: unknown runtime 'docker' (valid: process, inproc",
        ),
        (
            "[services.A]\nreplicas = 0\n",
            "services.A.replicas: Input should be greater than or equal to 1",
        ),
        (
            "[services.A]\nreplica = 2\n",
            "services.A.replica: unknown key; did you mean 'replicas'?",
        ),
        (
            "[services.A]\nplacement = 'everywhere'\n",
            "services.A.placement: Input should be 'default' or 'per-node'",
        ),
        (
            "[env.prod.defaults]\nevents = 'rabbit://x'\n",
            "env.prod.defaults.events: unknown event broker 'rabbit'",
        ),
        (
            "[bogus]\nx = 1\n",
            "bogus: unknown key (valid keys here: app, defaults, deploy, env, image, repository, resilience, security, services, tracing)",
        ),
    ],
)
def test_bad_config_names_file_key_and_valid_values(
    tmp_path: Path, extra: str, message: str
) -> None:
    """Each mistake gives one ConfigError with the file, the key and what is valid."""
    write(tmp_path, BASE + extra)
    with pytest.raises(lumi.ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value).startswith(str(tmp_path / "lumi.toml") + ": ")
    assert message in str(info.value)


def test_missing_app_section(tmp_path: Path) -> None:
    """A file without [app] says app is required."""
    write(tmp_path, "[defaults]\nrpc='http'\n")
    with pytest.raises(lumi.ConfigError, match="app: is required"):
        load_config(tmp_path)


def test_unknown_environment_lists_the_known_ones(tmp_path: Path) -> None:
    """--env with a typo suggests the closest environment."""
    write(
        tmp_path,
        BASE + "[env.prod.defaults]\nevents='memory'\n[env.staging.defaults]\nevents='memory'\n",
    )
    with pytest.raises(
        lumi.ConfigError,
        match="no environment 'prd'; did you mean 'prod'\\? \\(environments: prod, staging\\)",
    ):
        load_config(tmp_path, env="prd")


def test_invalid_toml_and_missing_files(tmp_path: Path) -> None:
    """Broken TOML and missing config files are reported with the path."""
    with pytest.raises(lumi.ConfigError, match="no lumi.toml"):
        load_config(tmp_path)
    write(tmp_path, "[app\n")
    with pytest.raises(lumi.ConfigError, match="not valid TOML"):
        load_config(tmp_path)
    with pytest.raises(lumi.ConfigError, match="no such file or directory"):
        load_config(tmp_path / "nope")


@pytest.mark.parametrize(
    ("services", "module", "message"),
    [
        ('["nomodule:A"]', "", "app.services[0]: cannot import 'nomodule'"),
        (
            '["svcmod1:Servce"]',
            "svcmod1",
            "module 'svcmod1' has no 'Servce'; did you mean 'Service1'?",
        ),
        ('["svcmod2"]', "svcmod2", "app.services[0]: 'svcmod2' is not 'package.module:ClassName'"),
        ('["svcmod3:helper"]', "svcmod3", "'svcmod3:helper' is not a lumi.Service subclass"),
        ('["svcmod4:S"]', "svcmod4", "importing 'svcmod4' failed: RuntimeError: boom"),
    ],
)
def test_services_that_cannot_be_imported(
    tmp_path: Path, services: str, module: str, message: str
) -> None:
    """A service that does not import is named with the cause."""
    bodies = {
        "svcmod1": "import lumi\nclass Service1(lumi.Service):\n    pass\n",
        "svcmod2": "",
        "svcmod3": "def helper(): pass\n",
        "svcmod4": "raise RuntimeError('boom')\n",
    }
    if module:
        (tmp_path / f"{module}.py").write_text(bodies[module])
    write(tmp_path, f'[app]\nname="t"\nservices={services}\n')
    with pytest.raises(lumi.ConfigError) as info:
        load_config(tmp_path).load_services()
    assert message in str(info.value)


def test_service_section_must_name_an_app_service(tmp_path: Path) -> None:
    """[services.X] for a service not in the app is an error with a suggestion."""
    (tmp_path / "svcmod5.py").write_text("import lumi\nclass Orders(lumi.Service):\n    pass\n")
    write(tmp_path, '[app]\nname="t"\nservices=["svcmod5:Orders"]\n[services.Order]\nreplicas=2\n')
    with pytest.raises(
        lumi.ConfigError,
        match="services.Order: no service named 'Order' in app.services; did you mean 'Orders'",
    ):
        load_config(tmp_path).load_services()
