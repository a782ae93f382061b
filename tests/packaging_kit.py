"""Artifacts for tests that need real interfaces and generated clients without a wheel build."""

from __future__ import annotations

from lumi.codegen import get_generator
from lumi.codegen.base import GenerateRequest
from lumi.model.interface import ServiceInterface, interface
from lumi.packaging import oci
from lumi.packaging.artifact import Artifact, ArtifactManifest, Bindings, Provenance


def client_artifact(
    service: type | ServiceInterface, version: str, requires: dict[str, str] | None = None
) -> Artifact:
    """An artifact of ``service`` at ``version`` whose clients layer holds the real generated
    Python client (the wheel is a stand-in)."""
    iface = service if isinstance(service, ServiceInterface) else interface(service)
    iface = iface.model_copy(update={"version": version, "requires": sorted(requires or {})})
    files = get_generator("python-client").generate(GenerateRequest([iface], package="team"))
    clients = {f"python/{path}": text.encode() for path, text in files.items()}
    manifest = ArtifactManifest(
        app="team",
        service=iface.name,
        version=version,
        entry=f"team.x:{iface.name}",
        interface=iface.to_dict(),
        fingerprint=iface.fingerprint,
        requires=requires or {},
        bindings=Bindings(rpc=["http"], events="embedded", runtime="process"),
        wheel="team-1.0.0-py3-none-any.whl",
        provenance=Provenance(
            builder="lumi test", created="2026-01-01T00:00:00Z", source_date_epoch=1767225600
        ),
    )
    return Artifact.create(
        manifest,
        [
            (oci.WHEEL_MEDIA_TYPE, "team-1.0.0-py3-none-any.whl", b"stand-in wheel"),
            (oci.LOCK_MEDIA_TYPE, "requirements.lock", b""),
            (oci.CLIENTS_MEDIA_TYPE, "clients.tar.gz", oci.reproducible_targz(clients, 0)),
        ],
    )
