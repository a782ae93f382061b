"""System services: build service artifacts, version them, publish them to a repository and
resolve the interfaces a service requires. See ``docs/shipping.md``.

Deploy reads only the :class:`Repository`: ``versions``, ``manifest`` and ``pull``.
"""

from lumi.packaging.artifact import Artifact, ArtifactManifest
from lumi.packaging.repository import Published, PushResult, Repository, open_repository, parse_ref

__all__ = [
    "Artifact",
    "ArtifactManifest",
    "Published",
    "PushResult",
    "Repository",
    "open_repository",
    "parse_ref",
]
