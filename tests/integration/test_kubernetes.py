"""``lumi deploy --target kubernetes``: the example shop's base and overlays pass
kubernetes-validate (strict), ``kubectl kustomize`` builds each overlay into exactly the
environment's objects, the output matches the golden files, and --apply says plainly when no
cluster is configured."""

from __future__ import annotations

import base64
import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from lumi.config import load_config
from lumi.targets import kustomize
from lumi.targets.kubernetes import Object, render
from tests.conftest import ROOT, SHOP
from tests.integration.harness import copy_app

GOLDEN = ROOT / "tests" / "golden" / "kubernetes" / "shop"
ENVIRONMENTS = ["staging", "prod"]
VERSIONS = ["1.33.0", kubernetes_validate.latest_version()]


def lumi(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lumi.cli.main", *args],
        capture_output=True, text=True, timeout=120, env={**os.environ, "NO_COLOR": "1", **(env or {})},
    )  # fmt: skip


def kubectl() -> str:
    path = shutil.which("kubectl")
    assert path is not None, "kubectl is missing: run scripts/test-deps"
    return path


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("k8s") / "deploy"
    done = lumi("deploy", "--target", "kubernetes", "--env", "staging", "--env", "prod",
                "--out", str(out), "--app", str(SHOP))  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


def built(folder: Path) -> list[Object]:
    """What ``kubectl kustomize`` makes of ``folder``."""
    done = subprocess.run(
        [kubectl(), "kustomize", str(folder)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return kustomize.objects_of(done.stdout)


def test_golden_files_match_the_example_app() -> None:
    """The shop's base and its staging and prod overlays equal the committed golden files."""
    done = lumi("deploy", "--target", "kubernetes", "--env", "staging", "--env", "prod", "--out", str(GOLDEN),
                "--app", str(SHOP), "--check")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is up to date" in done.stdout


@pytest.mark.parametrize("folder", ["base", "overlays/staging", "overlays/prod"])
def test_every_object_passes_strict_validation(rendered: Path, folder: str) -> None:
    """Each object kubectl kustomize builds is valid for current Kubernetes, strictly (no
    unknown fields)."""
    objects = built(rendered / folder)
    assert objects
    for obj in objects:
        for version in VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(
                    f"{obj['kind']} {obj['metadata']['name']} ({version}): {str(exc).splitlines()[0]}"
                )


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_an_overlay_builds_exactly_its_environment(rendered: Path, env: str) -> None:
    """kubectl kustomize overlays/ENV gives the objects rendered directly for ENV (plus its
    namespace and ConfigMap), so the patches lose nothing."""
    direct = render(load_config(SHOP, env))
    namespace = f"shop-{env}"
    got = {(o["kind"], o["metadata"]["name"]): o for o in built(rendered / "overlays" / env)}
    configmap = next(o for o in got.values() if o["kind"] == "ConfigMap")
    assert configmap["data"] == direct.config
    assert configmap["metadata"]["name"].startswith(direct.config_name + "-")  # hashed
    assert got.pop(("Namespace", namespace))
    del got[("ConfigMap", configmap["metadata"]["name"])]
    for name in direct.certificates.values():  # generated from the issued files (mTLS)
        assert got.pop(("Secret", name.secret))["type"] == "kubernetes.io/tls"
    expected = {}
    for obj in direct.objects:
        want = copy.deepcopy(obj)
        want["metadata"]["namespace"] = namespace
        for container in _containers(want):
            container["envFrom"][0]["configMapRef"]["name"] = configmap["metadata"]["name"]
        expected[(want["kind"], want["metadata"]["name"])] = want
    assert got == expected


def _containers(obj: Object) -> list[dict[str, Any]]:
    template = obj.get("spec", {}).get("template")
    return template["spec"]["containers"] if template else []


def objects_by_kind(env: str | None) -> dict[tuple[str, str], Object]:
    return {(o["kind"], o["metadata"]["name"]): o for o in render(load_config(SHOP, env)).objects}


def test_a_deployment_has_probes_drain_and_config() -> None:
    """Deployments probe /healthz and /readyz (over TLS), pause in preStop before SIGTERM, allow the
    drain period, run non-root read-only, and read the ConfigMap; capabilities are wired by
    Service DNS names."""
    objects = objects_by_kind(None)
    inventory = objects[("Deployment", "inventory")]
    pod = inventory["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"] == {
        "path": "/readyz",
        "port": "http",
        "scheme": "HTTPS",
    }  # mTLS: the default
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["failureThreshold"] == 30  # defaults.start_timeout
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    assert pod["terminationGracePeriodSeconds"] == 5 + 10 + 5  # preStop + grace_period + margin
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["envFrom"] == [{"configMapRef": {"name": "shop-config"}}]
    config = render(load_config(SHOP)).config
    assert config["LUMI_ENDPOINTS_CATALOG"] == "http://catalog-http:8080"
    assert objects[("Service", "catalog-http")]["spec"]["ports"][0]["port"] == 8080
    assert objects[("Deployment", "catalog")]["spec"]["replicas"] == 2


def test_prod_has_a_daemonset_autoscalers_and_a_budget() -> None:
    """In prod the per-node Catalog is a DaemonSet whose Service keeps traffic on the node,
    Orders has an HPA, a PDB and its broker URL from a Secret, and the function Mailer an
    HPA."""
    objects = objects_by_kind("prod")
    orders = objects[("Deployment", "orders")]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in orders["env"]}
    assert env["LUMI_EVENTS"]["valueFrom"] == {
        "secretKeyRef": {"name": "shop-broker", "key": "url"}
    }
    assert ("Deployment", "catalog") not in objects
    assert (
        objects[("DaemonSet", "catalog")]["spec"]["template"]["spec"]["containers"][0]["name"]
        == "catalog"
    )
    assert objects[("Service", "catalog-http")]["spec"]["internalTrafficPolicy"] == "Local"
    hpa = objects[("HorizontalPodAutoscaler", "orders")]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 10)
    assert objects[("PodDisruptionBudget", "orders")]["spec"]["minAvailable"] == 2
    mailer = objects[("HorizontalPodAutoscaler", "mailer")]["spec"]
    assert (mailer["minReplicas"], mailer["maxReplicas"]) == (1, 4)  # [services.Mailer.function]


def test_a_service_per_transport_port(tmp_path: Path) -> None:
    """A service served on two transports gets a container port and a Service for each, and
    its callers' ConfigMap lists both endpoints, the default first."""
    app = copy_app(SHOP, tmp_path / "shop")
    toml = app / "lumi.toml"
    toml.write_text(
        toml.read_text().replace(
            "[services.Catalog]\n", '[services.Catalog]\nrpc = ["http", "jsonl"]\n', 1
        )
    )
    rendered = render(load_config(app))
    objects = {(o["kind"], o["metadata"]["name"]): o for o in rendered.objects}
    ports = objects[("Deployment", "catalog")]["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert [(p["name"], p["containerPort"]) for p in ports] == [("http", 8080), ("jsonl", 9101)]
    assert objects[("Service", "catalog-jsonl")]["spec"]["ports"][0]["targetPort"] == "jsonl"
    assert (
        rendered.config["LUMI_ENDPOINTS_CATALOG"]
        == "http://catalog-http:8080 jsonl://catalog-jsonl:9101"
    )


def test_apply_without_a_cluster_says_so(tmp_path: Path) -> None:
    """--apply with no cluster configured writes the manifests and says plainly that nothing
    was applied, and how to apply them later."""
    empty = tmp_path / "kubeconfig"
    empty.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    out = tmp_path / "deploy"
    done = lumi("deploy", "--target", "kubernetes", "--env", "prod", "--out", str(out), "--app", str(SHOP), "--apply",
                env={"KUBECONFIG": str(empty)})  # fmt: skip
    assert done.returncode == 2
    assert "no Kubernetes cluster is configured" in done.stderr
    assert f"kubectl apply -k {out / 'overlays' / 'prod'}" in done.stderr
    assert (out / "overlays" / "prod" / "kustomization.yaml").is_file()


def test_cli_mistakes_get_one_line(tmp_path: Path) -> None:
    """An unknown target, environment, or --apply without one environment: one line each."""
    cases = [
        (["--target", "nomad"], "unknown deploy target 'nomad' (valid: local, kubernetes)"),
        (["--target", "kubernetes", "--env", "prd"], "no environment 'prd'; did you mean 'prod'?"),
        (["--target", "kubernetes", "--apply"], "--apply and --images take one environment"),
    ]
    for args, message in cases:
        done = lumi("deploy", *args, "--out", str(tmp_path / "x"), "--app", str(SHOP))
        assert done.returncode == 2, done.stderr
        assert message in done.stderr
        assert len([line for line in done.stderr.splitlines() if line.startswith("error")]) == 1


def test_mtls_workloads_mount_a_tls_secret_issued_from_the_app_ca(tmp_path: Path) -> None:
    """With mTLS on (the default), every pod mounts its service's TLS Secret read-only at
    LUMI_TLS_DIR and probes over HTTPS; the base generates each Secret from a
    certificate of the app's CA naming the service's identity; it all passes strict
    validation; a second deploy keeps the certificates, and --check ignores them."""
    from cryptography import x509

    app = copy_app(SHOP, tmp_path / "shop")
    out = tmp_path / "deploy"
    args = ["deploy", "--target", "kubernetes", "--env", "mtls", "--out", str(out),
            "--app", str(app)]  # fmt: skip
    done = lumi(*args)
    assert done.returncode == 0, done.stderr
    assert "issued 4 certificate(s)" in done.stdout
    objects = built(out / "overlays" / "mtls")
    for obj in objects:
        kubernetes_validate.validate(obj, VERSIONS[-1], strict=True)
    secrets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Secret"}
    ca = x509.load_pem_x509_certificate((app / ".lumi" / "ca" / "ca.crt").read_bytes())
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert {"name": "LUMI_TLS_DIR", "value": "/var/run/lumi/tls"} in container["env"]
        assert {"name": "tls", "mountPath": "/var/run/lumi/tls", "readOnly": True} in container[
            "volumeMounts"
        ]
        assert {"name": "tls", "secret": {"secretName": f"{name}-tls", "defaultMode": 0o440}} in (
            pod["volumes"]
        )
        assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
        secret = secrets[f"{name}-tls"]
        assert secret["type"] == "kubernetes.io/tls"
        assert set(secret["data"]) == {"tls.crt", "tls.key", "ca.crt"}
        cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
        assert cert.issuer == ca.subject
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        service = deployment["metadata"]["annotations"]["lumi.dev/service"]
        assert names.get_values_for_type(x509.UniformResourceIdentifier) == [
            f"spiffe://shop/{service}"
        ]
        assert f"{name}.shop" in names.get_values_for_type(x509.DNSName)
    folder = out / "base" / "tls"
    assert (folder / ".gitignore").read_text().splitlines()[-1] == "*"
    before = (folder / "orders-tls" / "tls.crt").read_bytes()
    again = lumi(*args)
    assert again.returncode == 0 and "issued" not in again.stdout, again.stdout
    assert (folder / "orders-tls" / "tls.crt").read_bytes() == before
    checked = lumi(*args, "--check")
    assert checked.returncode == 0 and "is up to date" in checked.stdout, checked.stdout


def test_cert_manager_certificates_and_grpc_probes_over_tls(tmp_path: Path) -> None:
    """security.kubernetes.certificates = "cert-manager" renders a Certificate per service
    (its identity, DNS names, both usages, the issuer) instead of issuing files; a gRPC-only
    service with mTLS probes with the image's health check (the kubelet's gRPC probe has no
    TLS). The other objects still pass strict validation."""
    app = copy_app(SHOP, tmp_path / "shop")
    toml = app / "lumi.toml"
    toml.write_text(
        toml.read_text()
        + '\n[env.grpc.security]\nmtls = true\nkubernetes = { certificates = "cert-manager", '
        'issuer = "shop-ca", issuer_kind = "ClusterIssuer" }\n'
    )
    rendered = render(load_config(app, "grpc"))
    assert rendered.certificates == {}  # nothing to issue: cert-manager does
    by_kind = {(o["kind"], o["metadata"]["name"]): o for o in rendered.objects}
    orders = by_kind[("Certificate", "orders")]["spec"]
    assert orders["secretName"] == "orders-tls"
    assert orders["uris"] == ["spiffe://shop/Orders"]
    assert orders["dnsNames"][:2] == ["orders.shop", "localhost"]
    assert {"server auth", "client auth"} <= set(orders["usages"])
    assert orders["issuerRef"] == {"name": "shop-ca", "kind": "ClusterIssuer",
                                   "group": "cert-manager.io"}  # fmt: skip
    assert orders["duration"] == "720h0m0s" and orders["renewBefore"] == "240h0m0s"
    container = by_kind[("Deployment", "orders")]["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["exec"]["command"] == [
        "python", "-m", "lumi.runtimes.healthcheck"
    ]  # fmt: skip
    for obj in rendered.objects:
        if obj["kind"] != "Certificate":
            kubernetes_validate.validate(obj, VERSIONS[-1], strict=True)
