"""The rendered Kubernetes pod spec run by ``podman kube play``, and a call through it.

podman 4.3 plays Deployments and ConfigMaps (not DaemonSets), without cluster DNS, so one
service that needs no other — Catalog — runs from the manifests ``kubectl kustomize`` builds
from ``lumi deploy``'s base. Two things are adapted for a single machine, and nothing else:
the node name comes from the downward API in a cluster (podman does not support that field),
and the container port is published on a free loopback port (a cluster routes to the pod).
"""

from __future__ import annotations

import base64
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from lumi.targets import kustomize
from tests.conftest import SHOP
from tests.engines.podman import BASE_IMAGE
from tests.integration.harness import copy_app, wait
from tests.servers import free_port

pytestmark = pytest.mark.slow


def run(*args: str, env: dict[str, str], timeout: float = 600) -> str:
    done = subprocess.run(
        args, capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture
def played(podman_env: dict[str, str], tmp_path: Path) -> Iterator[int]:
    """Catalog's rendered Deployment (mTLS on, the default) playing in podman; the loopback
    port it answers on."""
    app = copy_app(SHOP, tmp_path / "shop")
    run(sys.executable, "-m", "lumi.cli.main", "build", "image", "Catalog", "--app", str(app),
        "--base", BASE_IMAGE, env=podman_env)  # fmt: skip
    out = tmp_path / "deploy"
    run(
        sys.executable,
        "-m",
        "lumi.cli.main",
        "deploy",
        "--target",
        "kubernetes",
        "--out",
        str(out),
        "--app",
        str(app),
        env=podman_env,
    )
    objects = kustomize.objects_of(run("kubectl", "kustomize", str(out / "base"), env=podman_env))
    secrets = [
        o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == "catalog-tls"
    ]
    configmap = next(o for o in objects if o["kind"] == "ConfigMap")
    deployment = next(
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "catalog"
    )
    deployment["spec"]["replicas"] = 1
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].startswith("localhost/shop-catalog:")  # lumi build image's tag
    for variable in container["env"]:
        if variable["name"] == "LUMI_NODE":
            assert variable.pop("valueFrom") == {"fieldRef": {"fieldPath": "spec.nodeName"}}
            variable["value"] = "podman"
    for volume in deployment["spec"]["template"]["spec"]["volumes"]:
        if "secret" in volume:  # podman 4.3's kube play crashes on Secret volumes: the same
            [secret] = secrets  # files, from the Secret kustomize built, by hostPath
            assert volume.pop("secret")["secretName"] == "catalog-tls"
            assert secret["type"] == "kubernetes.io/tls"
            files = tmp_path / "catalog-tls"
            files.mkdir()
            for name, data in secret["data"].items():
                (files / name).write_bytes(base64.b64decode(data))
                (files / name).chmod(0o444)
            volume["hostPath"] = {"path": str(files), "type": "Directory"}
    port = free_port()
    container["ports"][0].update(hostIP="127.0.0.1", hostPort=port)
    (tmp_path / "configmap.yaml").write_text(yaml.safe_dump(configmap))
    play = tmp_path / "catalog.yaml"
    play.write_text(yaml.safe_dump(deployment))
    try:
        run("podman", "kube", "play", "--network", "slirp4netns", "--configmap",
            str(tmp_path / "configmap.yaml"), str(play), env=podman_env)  # fmt: skip
        yield port
    finally:
        subprocess.run(
            ["podman", "kube", "down", str(play)], env=podman_env, capture_output=True, check=False
        )
    gone = subprocess.run(["podman", "pod", "exists", "catalog-pod-0"], env=podman_env, check=False)
    assert gone.returncode == 1, "podman kube down left the pod behind"


def test_the_rendered_deployment_serves_under_podman_kube_play(
    played: int, podman_env: dict[str, str], tmp_path: Path
) -> None:
    """The pod from the rendered spec (non-root, read-only root, the ConfigMap's environment)
    answers a call on its published port, and reports ready."""
    url = f"https://127.0.0.1:{played}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/readyz", timeout=2, verify=False).status_code == 200
        except httpx.HTTPError:
            return False

    wait(ready, timeout=60, message="the pod to be ready")
    certs = tmp_path / "deploy" / "base" / "tls" / "orders-tls"  # a certificate of the app
    context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    context.check_hostname = False  # the pod's certificate names catalog.shop, not 127.0.0.1
    context.load_cert_chain(certs / "tls.crt", certs / "tls.key")
    answer = httpx.post(f"{url}/Catalog/product", json={"sku": "melon"}, timeout=10,
                        verify=context)  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"sku": "melon", "name": "Melon", "price_cents": 300}
    user = run("podman", "exec", "catalog-pod-0-catalog", "id", "-u", env=podman_env).strip()
    assert user == "10001"
    readonly = run("podman", "inspect", "catalog-pod-0-catalog", "--format", "{{.HostConfig.ReadonlyRootfs}}",
                   env=podman_env)  # fmt: skip
    assert readonly.strip() == "true"
    env = run(
        "podman",
        "exec",
        "catalog-pod-0-catalog",
        "printenv",
        "LUMI_ENDPOINTS_INVENTORY",
        env=podman_env,
    )
    assert env.strip() == "http://inventory-http:8080"  # from the ConfigMap


def test_the_rendered_mtls_deployment_serves_with_its_secret(
    played: int, podman_env: dict[str, str], tmp_path: Path
) -> None:
    """With mTLS on, the pod gets its rendered TLS Secret's files at LUMI_TLS_DIR: it is ready
    over TLS without a client certificate (what an HTTPS probe asks), its image's health check
    passes over TLS, it refuses a private call without a certificate, and serves curl
    presenting another service's certificate from the app's CA."""
    url = f"https://127.0.0.1:{played}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/readyz", timeout=2, verify=False).status_code == 200
        except httpx.HTTPError:
            return False

    wait(ready, timeout=60, message="the pod to be ready over TLS")
    refused = httpx.post(f"{url}/Catalog/product", json={"sku": "melon"}, verify=False, timeout=10)
    assert refused.status_code == 401 and refused.json()["code"] == "UNAUTHENTICATED"
    app = tmp_path / "shop"
    certs = tmp_path / "deploy" / "base" / "tls" / "orders-tls"  # another service's
    done = subprocess.run(
        ["curl", "-sS", "-m", "15", "--cert", str(certs / "tls.crt"), "--key",
         str(certs / "tls.key"), "--cacert", str(certs / "ca.crt"), "--resolve",
         f"catalog.shop:{played}:127.0.0.1", "-H", "content-type: application/json",
         "-d", '{"sku": "melon"}', f"https://catalog.shop:{played}/Catalog/product"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert '"price_cents":300' in done.stdout.replace(" ", ""), done.stdout
    assert (app / ".lumi" / "ca" / "ca.key").exists()  # issued from the app's CA
    # The image's health check (what the gRPC probe execs) probes over TLS with LUMI_TLS_DIR.
    run("podman", "exec", "catalog-pod-0-catalog", "python", "-m", "lumi.runtimes.healthcheck",
        env=podman_env)  # fmt: skip
