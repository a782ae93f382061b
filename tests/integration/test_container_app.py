"""The example shop with Orders in a container built by ``lumi build image``, under lumi run."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from lumi.runtimes.container import APP_LABEL
from tests.conftest import SHOP
from tests.engines.podman import BASE_IMAGE, containers_of
from tests.integration.harness import LumiRun, copy_app, wait

pytestmark = pytest.mark.slow


def podman(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_container_service_serves_the_host_and_calls_processes(
    lumi_run: Callable[..., LumiRun], podman_env: dict[str, str], tmp_path: Path
) -> None:
    """Orders runs in a container: the host calls it over HTTP, it calls Inventory (a process),
    its event reaches Mailer (a process) through the shared embedded log, and stopping lumi run
    leaves no container behind."""
    app = copy_app(SHOP, tmp_path / "shop")
    built = subprocess.run(
        [sys.executable, "-m", "lumi.cli.main", "build", "image", "Orders",
         "--app", str(app), "--base", BASE_IMAGE],
        capture_output=True, text=True, env=podman_env, timeout=900,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    assert "shop-orders:" in built.stdout
    run = lumi_run(app, "--env", "containers", env=podman_env)
    registry = run.wait_ready(timeout=120)
    orders = registry["services"]["Orders"]["replicas"][0]
    assert orders["runtime"] == "container"
    assert registry["services"]["Inventory"]["replicas"][0]["runtime"] == "process"
    label = f"{APP_LABEL}={app}"
    [container] = containers_of(label, podman_env)
    image = podman("image", "inspect", "localhost/shop-orders:0.1.0", "--format",
                   "{{.Config.User}}|{{.Config.StopSignal}}|{{json .Config.Healthcheck.Test}}",
                   env=podman_env)  # fmt: skip
    assert image.strip() == '10001:10001|SIGTERM|["CMD","python","-m","lumi.runtimes.healthcheck"]'
    # The image's HEALTHCHECK command, run in the live container, finds it ready.
    podman("exec", container, "python", "-m", "lumi.runtimes.healthcheck", env=podman_env)

    placed = run.post("Orders", "place", {"customer": "ada", "lines": [{"sku": "apple", "qty": 2}]})
    assert placed.status_code == 200, placed.text
    assert placed.json()["total_cents"] == 100  # priced by Catalog through Inventory
    refused = run.post(
        "Orders", "place", {"customer": "ada", "lines": [{"sku": "melon", "qty": 9}]}
    )
    assert refused.status_code == 409 and refused.json()["code"] == "FAILED_PRECONDITION"

    def mailed() -> object:
        sent = run.post("Mailer", "sent", {"customer": "ada"})
        return sent.status_code == 200 and sent.json()

    confirmations = wait(mailed, timeout=30, message="Mailer to confirm the order")
    assert confirmations == [f"Dear ada, order {placed.json()['id']} is confirmed."]

    assert run.stop() == 0
    assert containers_of(label, podman_env) == []
    assert "Orders[0]" in run.output and "draining" in run.output


def test_a_container_replica_speaks_mtls_with_its_mounted_certificate(
    lumi_run: Callable[..., LumiRun], podman_env: dict[str, str], tmp_path: Path
) -> None:
    """With mTLS on, Orders in a container serves TLS with the certificate lumi run issued it
    (mounted read-only), calls Inventory (a process) over mTLS, is refused to a caller without
    a certificate, passes its image's HEALTHCHECK over TLS, and cannot see the CA's key."""
    app = copy_app(SHOP, tmp_path / "shop")
    toml = app / "lumi.toml"
    toml.write_text(toml.read_text() + "\n[env.containers.security]\nmtls = true\n")
    built = subprocess.run(
        [sys.executable, "-m", "lumi.cli.main", "build", "image", "Orders",
         "--app", str(app), "--base", BASE_IMAGE],
        capture_output=True, text=True, env=podman_env, timeout=900,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    run = lumi_run(app, "--env", "containers", env=podman_env)
    registry = run.wait_ready(timeout=120)
    assert registry["mtls"] and registry["services"]["Orders"]["replicas"][0]["runtime"] == (
        "container"
    )
    [container] = containers_of(f"{APP_LABEL}={app}", podman_env)
    placed = run.post("Orders", "place", {"customer": "ada", "lines": [{"sku": "apple", "qty": 1}]})
    assert placed.status_code == 200, placed.text  # over mTLS to Orders, and Orders to Inventory
    url = run.endpoint("Orders")
    anonymous = httpx.post(
        f"{url}/Orders/place", json={"customer": "x", "lines": []}, verify=False, timeout=10
    )
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "UNAUTHENTICATED"
    podman("exec", container, "python", "-m", "lumi.runtimes.healthcheck", env=podman_env)
    listing = podman("exec", container, "ls", "-A", "/app/.lumi/ca", "/var/run/lumi/tls",
                     env=podman_env)  # fmt: skip
    assert "ca.key" not in listing and "tls.crt" in listing
    assert run.stop() == 0


def test_a_container_service_without_an_image_is_one_line(
    lumi_run: Callable[..., LumiRun], podman_env: dict[str, str], tmp_path: Path
) -> None:
    """lumi run with a container service whose image was never built stops with one line
    saying how to build it."""
    app = copy_app(SHOP, tmp_path / "shop")
    run = lumi_run(app, "--env", "containers", env=podman_env)
    assert run.proc.wait(timeout=120) == 1
    assert (
        f"error: Orders could not start: Orders runs in a container, but no image was built "
        f"for it: lumi build image Orders --app {app}"
    ) in run.output
