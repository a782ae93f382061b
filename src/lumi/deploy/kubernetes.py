"""The Kubernetes target's deploy half: pin every service's image to the digest of the version
the repository says to deploy, as a Kustomize overlay on top of the environment's own.

``lumi deploy ENV --target kubernetes --images REGISTRY`` plans exactly as the local target
does — versions and artifact digests from the repository, every range checked — then looks up
each service's image, ``REGISTRY/<app>-<service>:<version>`` (the reference ``lumi build
image`` tags), in that OCI registry and takes the digest of its manifest. It writes
``<out>/overlays/<ENV>-pinned/kustomization.yaml``: the overlay ``../<ENV>`` (the rendered
environment) with Kustomize's ``images`` transformer pinning each image by digest (a tag can
move; a digest cannot), and a ConfigMap ``<app>-deployed`` recording each service's version
and artifact digest. ``kubectl apply -k <out>/overlays/<ENV>-pinned`` deploys it.

Rendering the environment itself (Deployments, Services, probes) is
:mod:`lumi.targets.kustomize`'s, which ``lumi deploy`` runs first; this overlay builds on
``<out>/overlays/<ENV>``, takes its namespace and maps each image the manifests reference
(``newName``) to the registry's, pinned. The file is JSON, which is YAML: no YAML
writer needed.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from pathlib import Path

from lumi.config import AppConfig
from lumi.deploy.errors import RefusedError
from lumi.deploy.plan import Plan, make_plan
from lumi.deploy.state import Deployed
from lumi.packaging import oci
from lumi.packaging.settings import repository_for


@dataclasses.dataclass(frozen=True)
class Pin:
    service: str
    version: str
    artifact: str  # the artifact's manifest digest in the repository
    image: str  # REGISTRY/<app>-<service>, no tag
    digest: str  # the image manifest's digest

    @property
    def reference(self) -> str:
        return f"{self.image}@{self.digest}"


def image_name(registry: str, app: str, service: str) -> str:
    """``REGISTRY/<app>-<service>``, lower-cased to a valid repository name (as ``lumi build
    image`` names it)."""
    name = re.sub(r"[^a-z0-9.-]+", "-", f"{app}-{service}".lower()).strip("-.")
    return f"{registry.rstrip('/')}/{name}"


async def pin_images(plan: Plan, app: str, registry: str) -> list[Pin]:
    """The image digest of every planned version, looked up in the OCI registry ``registry``
    (``host[:port][/namespace]``, ``http://`` before it for a plain-HTTP one)."""
    from lumi.packaging.store.registry import RegistryStore

    scheme, sep, prefix = registry.partition("://")
    if not sep:
        scheme, prefix = "https", registry
    prefix = prefix.rstrip("/")
    host = prefix.split("/", 1)[0]
    store = RegistryStore(f"{scheme}://{host}")
    pins = []
    try:
        for move in plan.moves:
            name = image_name(prefix, app, move.service)
            tag = oci.check_tag(move.target.version.replace("+", "_"))
            data = await store.get_manifest(name.split("/", 1)[1], tag)
            if data is None:
                raise RefusedError(
                    f"no image {name}:{tag} for {move.ref}: build and push it "
                    f"(lumi build image {move.service}; push it in OCI format)"
                )
            digest = oci.digest_of(data)
            pins.append(Pin(move.service, move.target.version, move.target.digest, name, digest))
    finally:
        await store.aclose()
    return pins


async def render_pinned(
    config: AppConfig,
    refs: list[str],
    *,
    repo: str | None,
    images: str,
    out: Path,
    rendered: Mapping[str, str] | None = None,
) -> tuple[Path, list[Pin]]:
    """Plan ``refs`` of ``config``'s environment from the repository, pin their images, write
    the overlay; its folder and the pins. ``rendered`` names the image each service's workload
    references in the environment's manifests (default: the pinned image's name)."""
    async with repository_for(config, url=repo) as repository:
        plan = await make_plan(repository, config, Deployed(), refs)
    pins = await pin_images(plan, config.name, images)
    env = config.environment or "default"
    return pinned_overlay(out, env, config.name, pins, rendered or {}), pins


def pinned_overlay(
    out: Path, env: str, app: str, pins: list[Pin], rendered: Mapping[str, str] | None = None
) -> Path:
    """Write ``<out>/overlays/<env>-pinned/kustomization.yaml``; returns its folder. Each image
    the manifests reference (``rendered``: service → image name) becomes the pinned one."""
    names = rendered or {}
    folder = out / "overlays" / f"{env}-pinned"
    folder.mkdir(parents=True, exist_ok=True)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [f"../{env}"],
        "images": [
            {
                "name": names.get(p.service, p.image),
                "newName": p.image,
                "digest": p.digest,
            }
            for p in pins
        ],
        "configMapGenerator": [
            {
                "name": f"{app}-deployed",
                "literals": [f"{p.service}={p.version}@{p.artifact}" for p in pins],
                "options": {"disableNameSuffixHash": True},
            }
        ],
    }
    namespace = _namespace(out / "overlays" / env / "kustomization.yaml")
    if namespace:  # the record belongs with the environment's objects
        kustomization["namespace"] = namespace
    header = f"# Written by lumi deploy {env} --target kubernetes: every image pinned by digest.\n"
    (folder / "kustomization.yaml").write_text(header + json.dumps(kustomization, indent=2) + "\n")
    return folder


def _namespace(kustomization: Path) -> str | None:
    """The top-level ``namespace:`` of the environment's overlay, if it sets one."""
    try:
        text = kustomization.read_text()
    except OSError:
        return None
    found = re.search(r"""^["']?namespace["']?\s*:\s*["']?([a-z0-9-]+)""", text, re.M)
    return found.group(1) if found else None
