"""The pieces behind the container, function and Kubernetes runtimes that need no engine:
environment variables, configuration, the Containerfile, engine choice, dependency pins,
JSON patches."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from lumi.config import load_config
from lumi.model.errors import ConfigError
from lumi.runtimes import environment as envvars
from lumi.runtimes.engine import EngineMissing, find_engine
from lumi.targets.dependencies import PythonTarget, pins_for, read_lock
from lumi.targets.image import image_ref, render_containerfile
from lumi.targets.kubernetes import kebab
from lumi.targets.kustomize import json_patch
from tests.conftest import SHOP

ECHO = Path(__file__).parent.parent / "integration" / "apps" / "echo"


def test_ports_come_from_the_environment_then_the_config() -> None:
    """LUMI_PORT_<T> wins, LUMI_PORT is the first transport's, then services.X.port, else 0."""
    environ = {"LUMI_PORT_GRPC": "9000", "LUMI_PORT": "8000"}
    assert envvars.ports_from(environ, ["http", "grpc"], 7000) == {"http": 8000, "grpc": 9000}
    assert envvars.ports_from({}, ["http", "grpc"], 7000) == {"http": 7000, "grpc": 0}
    with pytest.raises(ConfigError, match="LUMI_PORT_HTTP must be a port number, not 'x'"):
        envvars.ports_from({"LUMI_PORT_HTTP": "x"}, ["http"], None)


def test_endpoints_come_from_json_or_one_variable_per_service() -> None:
    """LUMI_ENDPOINTS (JSON) and LUMI_ENDPOINTS_<SERVICE> (space-separated, winning)."""
    environ = {
        "LUMI_ENDPOINTS": '{"Catalog": ["http://a:1"], "Orders": ["http://o:1"]}',
        "LUMI_ENDPOINTS_CATALOG": "http://b:2 grpc://b:3",
    }
    found = envvars.endpoints_from(environ, ["Catalog", "Orders"])
    assert found == {"Catalog": ["http://b:2", "grpc://b:3"], "Orders": ["http://o:1"]}
    with pytest.raises(ConfigError, match="LUMI_ENDPOINTS is not JSON"):
        envvars.endpoints_from({"LUMI_ENDPOINTS": "{"}, [])
    with pytest.raises(ConfigError, match="must be a JSON object like"):
        envvars.endpoints_from({"LUMI_ENDPOINTS": '{"A": "http://a:1"}'}, [])


def test_lumi_events_overrides_every_service_and_is_checked() -> None:
    """LUMI_EVENTS replaces the broker of every service; an unknown one is one clear line."""
    config = load_config(SHOP)
    moved = envvars.with_events(config, "memory")
    assert {moved.binding(name).events for name in ("Orders", "Mailer")} == {"memory"}
    with pytest.raises(ConfigError, match="LUMI_EVENTS: unknown event broker 'kafak'"):
        envvars.with_events(config, "kafak://x:9092")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            "[services.Echo.function]\nmin_instances = 5\nmax_instances = 2\n",
            "min_instances (5) is above max_instances (2)",
        ),
        ("[services.Echo.function]\nconcurrency = 0\n", "services.Echo.function.concurrency"),
        ("[services.Echo.kubernetes]\ncpu = 'lots'\n", "services.Echo.kubernetes.cpu"),
        ("[services.Echo.kubernetes.autoscale]\nmin = 4\nmax = 2\n", "min (4) is above max (2)"),
        ("[image]\nbase = ''\n", "image.base"),
    ],
)
def test_runtime_settings_are_validated(tmp_path: Path, table: str, message: str) -> None:
    """Bad function, Kubernetes or image settings are one ConfigError naming the key."""
    app = tmp_path / "echo"
    app.mkdir()
    (app / "lumi.toml").write_text((ECHO / "lumi.toml").read_text() + "\n" + table)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(app)


def test_the_containerfile_is_multi_stage_non_root_with_a_healthcheck() -> None:
    """Build and runtime stages from the base, a final stage per service with `lumi serve`,
    a non-root user, SIGTERM and a HEALTHCHECK."""
    text = render_containerfile("shop", ["Orders", "Mailer"], "localhost/base:1")
    assert text.count("FROM localhost/base:1 AS ") == 2
    assert "--no-index --no-deps --find-links /tmp/wheels" in text  # the locked wheels, offline
    assert "USER 10001:10001" in text and "useradd --system --uid 10001" in text
    assert "STOPSIGNAL SIGTERM" in text
    assert 'CMD ["python", "-m", "lumi.runtimes.healthcheck"]' in text
    assert (
        'FROM runtime AS svc-orders\nLABEL io.lumi.service="Orders"\nENTRYPOINT ["lumi", "serve", "Orders"]'
        in text
    )
    assert 'ENTRYPOINT ["lumi", "serve", "Mailer"]' in text


def test_image_references_are_valid() -> None:
    """References are lower-case registry/app-service:version."""
    config = load_config(SHOP)
    assert image_ref(config, "Orders", "1.2.0+dev") == "localhost/shop-orders:1.2.0-dev"


def fake_docker(folder: Path) -> None:
    script = folder / "docker"
    script.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_docker_without_a_daemon_does_not_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a docker CLI whose daemon does not answer: one line saying what to install."""
    fake_docker(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EngineMissing) as caught:
        find_engine("run")
    assert str(caught.value) == (
        "no container engine to run with; found docker (installed, but its daemon does not "
        "answer): install podman (apt install podman) or docker"
    )


def test_a_forced_engine_must_be_able_to_do_the_job(monkeypatch: pytest.MonkeyPatch) -> None:
    """LUMI_CONTAINER_ENGINE=buildah cannot run containers, and says which can."""
    monkeypatch.setenv("LUMI_CONTAINER_ENGINE", "buildah")
    with pytest.raises(
        EngineMissing, match=r"cannot run containers \(use one of: podman, docker\)"
    ):
        find_engine("run")


def test_pins_follow_the_installed_versions_without_lumi_itself() -> None:
    """An app without a lock pins what Lumi needs, transitively, at the installed versions."""
    pins = pins_for(load_config(ECHO))
    import pydantic

    assert pins["pydantic"] == pydantic.VERSION
    assert "pydantic-core" in pins and "aiohttp" in pins
    assert "lumi-runtime" not in pins


def test_a_lock_file_wins_and_bad_lines_are_named(tmp_path: Path) -> None:
    """requirements.lock (lumi build lock's format) is used as is; a bad line names its place."""
    lock = tmp_path / "requirements.lock"
    lock.write_text("# pinned\nPydantic==2.7.0\n\nlumi-runtime==0.1.0\n")
    assert read_lock(lock) == {"pydantic": "2.7.0", "lumi-runtime": "0.1.0"}
    lock.write_text("pydantic>=2\n")
    with pytest.raises(
        Exception, match=r"requirements.lock:1: 'pydantic>=2' is not 'name==version'"
    ):
        read_lock(lock)


def test_wheels_are_chosen_for_the_target_interpreter() -> None:
    """pip download is told the target's Python and every manylinux tag its glibc accepts."""
    args = PythonTarget("3.12", "aarch64", "2.34").pip_arguments()
    assert args[:4] == ["--python-version", "3.12", "--implementation", "cp"]
    platforms = [args[i + 1] for i, a in enumerate(args) if a == "--platform"]
    assert platforms[0] == "manylinux_2_34_aarch64" and "manylinux2014_aarch64" in platforms
    assert "manylinux_2_35_aarch64" not in platforms


def test_json_patch_turns_one_object_into_the_other() -> None:
    """The overlay patches add, remove and replace, escaping / in keys."""
    old = {
        "metadata": {"labels": {"app.kubernetes.io/name": "a"}},
        "spec": {"replicas": 1, "x": [1, 2], "z": 0},
    }
    new = {
        "metadata": {"labels": {"app.kubernetes.io/name": "b"}},
        "spec": {"replicas": 3, "y": True, "x": [1]},
    }
    assert json_patch(old, new) == [
        {"op": "replace", "path": "/metadata/labels/app.kubernetes.io~1name", "value": "b"},
        {"op": "remove", "path": "/spec/z"},
        {"op": "replace", "path": "/spec/replicas", "value": 3},
        {"op": "add", "path": "/spec/y", "value": True},
        {"op": "replace", "path": "/spec/x", "value": [1]},
    ]
    assert json_patch(old, old) == []


def test_kebab_names_are_dns_labels() -> None:
    """Service names become DNS labels for Kubernetes objects."""
    assert [kebab(n) for n in ("Orders", "OrderHistory", "HTTPGate", "a_b")] == [
        "orders",
        "order-history",
        "httpgate",
        "a-b",
    ]


def test_state_dir_can_move(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """LUMI_STATE_DIR moves an app's .lumi folder (a Lambda function's app is read-only)."""
    from lumi.paths import AppPaths

    assert AppPaths("/app").state == Path("/app/.lumi")
    monkeypatch.setenv("LUMI_STATE_DIR", str(tmp_path))
    assert AppPaths("/app").events == tmp_path / "events.db"
    assert os.environ["LUMI_STATE_DIR"] == str(tmp_path)


async def test_the_container_runtime_says_why_docker_will_not_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With only docker (its daemon answering), the container runtime says it needs podman."""
    from lumi.model.errors import AppError
    from lumi.runtimes.container import ContainerRuntime

    script = tmp_path / "docker"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(AppError, match=r"needs podman \(docker cannot\): apt install podman"):
        ContainerRuntime().engine  # noqa: B018 - the property finds the engine


def test_image_and_lambda_join_an_existing_build_group() -> None:
    """When `lumi build` is already a group (of artifacts), image and lambda join it."""
    import typer
    import typer.main

    from lumi.cli import images

    app = typer.Typer()
    group = typer.Typer()
    app.add_typer(group, name="build")

    @group.command("artifacts")
    def artifacts() -> None:
        """Build artifacts."""

    images.register(app)
    command = typer.main.get_command(app)
    assert set(command.commands["build"].commands) == {"artifacts", "image", "lambda"}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["image", "Ordrs"],
            "no service 'Ordrs' in this app; did you mean 'Orders'? (services: Catalog, Inventory, Orders, Mailer)",
        ),
        (
            ["lambda", "Catalog", "--python", "2.7"],
            "no Lambda runtime python2.7 (choose: 3.9, 3.10, 3.11, 3.12, 3.13)",
        ),
        (
            ["lambda", "Catalog", "--arch", "sparc"],
            "no Lambda architecture 'sparc' (choose: x86_64, arm64)",
        ),
    ],
)
def test_build_mistakes_are_one_line(args: list[str], message: str) -> None:
    """A mistyped service, Python version or architecture: one line, exit 2."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "lumi.cli.main", "build", *args, "--app", str(SHOP)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == f"error: {message}"
