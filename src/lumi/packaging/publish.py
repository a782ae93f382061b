"""``lumi publish``: push the last build's artifacts, all or nothing.

Every artifact is checked before the first byte is sent — a version published with other
content, or a breaking change its version does not announce, refuses the whole publish — so a
refusal leaves the repository exactly as it was.
"""

from __future__ import annotations

from pathlib import Path

from lumi.packaging.artifact import Artifact
from lumi.packaging.repository import PushResult, Repository, check_unchanged
from lumi.packaging.store.base import Progress, no_progress
from lumi.packaging.versioning import check_release, refusal


async def check_publishable(
    repository: Repository, artifacts: list[Artifact], app_dir: Path | None
) -> None:
    """Raise the first refusal any of ``artifacts`` would meet."""
    for artifact in artifacts:
        service, version = artifact.manifest.service, artifact.manifest.version
        check_unchanged(
            artifact, await repository.published_digest(service, version), repository.url
        )
        check = await check_release(repository, artifact.manifest.service_interface(), app_dir)
        if check.errors:
            raise refusal(check)


async def publish(
    repository: Repository,
    artifacts: list[Artifact],
    *,
    app_dir: Path | None = None,
    progress: Progress = no_progress,
) -> list[PushResult]:
    """Check every artifact, then push them in order."""
    await check_publishable(repository, artifacts, app_dir)
    return [await repository.push(artifact, progress=progress) for artifact in artifacts]
