"""lumi deploy ENV --target kubernetes --images REGISTRY: the environment's manifests rendered,
and the versions the repository says with their images pinned by digest in a Kustomize overlay
on top, which kubectl builds and Kubernetes' schemas accept."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from lumi.packaging import oci
from lumi.packaging.store.registry import RegistryStore
from tests.integration.shipping import lumi, shop_repo
from tests.registry import PASSWORD, USER, Registry

pytestmark = pytest.mark.slow
SERVICES = ("Catalog", "Inventory", "Orders", "Mailer")


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    server = Registry()
    yield server
    server.stop()


async def push_image(registry: Registry, name: str, tag: str) -> str:
    """A small OCI image ``name:tag`` (a config and one layer) in the registry; its digest."""
    config_bytes = json.dumps({"architecture": "amd64", "os": "linux", "name": name}).encode()
    layer_bytes = oci.reproducible_targz({"app/marker": name.encode()}, 0)
    config = oci.Descriptor.of("application/vnd.oci.image.config.v1+json", config_bytes)
    layer = oci.Descriptor.of("application/vnd.oci.image.layer.v1.tar+gzip", layer_bytes)
    manifest = oci.image_manifest(config, [layer])
    store = RegistryStore(registry.url, username=USER, password=PASSWORD)
    try:
        await store.put_blob(name, config.digest, config_bytes)
        await store.put_blob(name, layer.digest, layer_bytes)
        await store.put_manifest(name, tag, manifest, oci.MANIFEST_MEDIA_TYPE)
    finally:
        await store.aclose()
    return oci.digest_of(manifest)


def test_images_are_pinned_by_digest_and_the_overlay_builds(
    tmp_path: Path, registry: Registry
) -> None:
    """Each workload's image (as rendered: localhost/shop-<service>:<version>) becomes
    host/shop-<service>@<the pushed digest>; the artifact digests are recorded; kubectl
    kustomize builds it; strict schemas accept every object."""
    app = shop_repo(tmp_path / "src")
    env = {"LUMI_REPOSITORY": f"{registry.url}/team", "LUMI_REGISTRY_USERNAME": USER,
           "LUMI_REGISTRY_PASSWORD": PASSWORD}  # fmt: skip
    assert lumi("build", cwd=app, env=env).returncode == 0
    assert lumi("publish", "-q", cwd=app, env=env).returncode == 0
    out = tmp_path / "deploy"
    args = (
        "deploy",
        "local",
        "--target",
        "kubernetes",
        "--images",
        registry.url,
        "--out",
        str(out),
    )
    missing = lumi(*args, cwd=app, env=env)
    # the renderer's warnings (embedded events, images not built here) come first
    assert missing.returncode == 2 and missing.stderr.strip().splitlines()[-1] == (
        f"error: no image {registry.host}/shop-catalog:0.1.0 for Catalog@0.1.0: build and push "
        "it (lumi build image Catalog; push it in OCI format)"
    )
    assert not (out / "overlays" / "local-pinned").exists()

    digests = {s: asyncio.run(push_image(registry, f"shop-{s.lower()}", "0.1.0")) for s in SERVICES}
    done = lumi(*args, cwd=app, env=env)
    assert done.returncode == 0, done.stderr
    built = subprocess.run(["kubectl", "kustomize", str(out / "overlays" / "local-pinned")],
                           capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    objects = list(yaml.safe_load_all(built.stdout))
    images = sorted(o["spec"]["template"]["spec"]["containers"][0]["image"]
                    for o in objects if o["kind"] in ("Deployment", "DaemonSet"))  # fmt: skip
    assert images == sorted(f"{registry.host}/shop-{s.lower()}@{digests[s]}" for s in SERVICES)
    (recorded,) = [o for o in objects if o["metadata"]["name"] == "shop-deployed"]
    shown = json.loads(lumi("repo", "show", "Orders", cwd=app, env=env).stdout)
    assert recorded["data"]["Orders"] == f"0.1.0@{shown['digest']}"
    assert recorded["metadata"]["namespace"] == "shop-local"
    for obj in objects:
        kubernetes_validate.validate(obj, "1.33.0", strict=True)
