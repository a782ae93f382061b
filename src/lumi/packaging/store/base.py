"""The storage axis of the artifact repository: where OCI blobs and manifests live.

A :class:`Store` only moves bytes by digest and tag; everything that makes a repository safe
(digest checks, immutable versions, signatures) is done once, above it, by
:class:`lumi.packaging.repository.Repository`. Backends: ``layout.py`` (an OCI image-layout
directory, the default) and ``registry.py`` (any OCI distribution registry, through ``oras``).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Protocol


class Progress(Protocol):
    """Starts one transfer bar: ``advance = progress(description, total_bytes)``; then
    ``advance(n)`` after every ``n`` bytes moved."""

    def __call__(self, description: str, total: int) -> Callable[[int], None]: ...


def no_progress(description: str, total: int) -> Callable[[int], None]:
    """A :class:`Progress` that shows nothing."""
    return lambda n: None


class TagTaken(Exception):
    """``put_manifest(create=True)`` found the tag pointing at another manifest."""

    def __init__(self, digest: str) -> None:
        super().__init__(digest)
        self.digest = digest


class Store(abc.ABC):
    """Blobs and manifests of OCI repositories (``repo`` is a repository path like
    ``shop/orders``). Missing things are ``None``/``False``, never an exception."""

    url: str
    atomic_tags: bool = True
    """Whether ``put_manifest(create=True)`` is atomic: two creators of one tag, one wins."""

    @abc.abstractmethod
    async def has_blob(self, repo: str, digest: str) -> bool:
        """Whether the blob is stored (and visible from ``repo``)."""

    @abc.abstractmethod
    async def put_blob(
        self, repo: str, digest: str, data: bytes, progress: Progress = no_progress
    ) -> None:
        """Store a blob under its digest."""

    @abc.abstractmethod
    async def get_blob(
        self, repo: str, digest: str, size: int, progress: Progress = no_progress
    ) -> bytes | None:
        """A blob's bytes as stored (unchecked: the repository verifies them), or ``None``.
        Reading stops past ``size`` bytes, so a swollen blob cannot exhaust memory."""

    @abc.abstractmethod
    async def put_manifest(
        self, repo: str, tag: str, data: bytes, media_type: str, *, create: bool = False
    ) -> None:
        """Store a manifest and point ``tag`` at it. With ``create``, a tag that already points
        at another manifest stays as it is and :class:`TagTaken` names that manifest — atomic
        where the store allows it (a registry has no compare-and-set: see its module)."""

    @abc.abstractmethod
    async def get_manifest(self, repo: str, reference: str) -> bytes | None:
        """The manifest bytes a tag or digest points at, or ``None``."""

    @abc.abstractmethod
    async def tags(self, repo: str) -> list[str]:
        """Every tag of ``repo`` (empty if it does not exist)."""

    @abc.abstractmethod
    async def repositories(self) -> list[str]:
        """Every repository path that holds at least one tag."""

    async def aclose(self) -> None:  # noqa: B027 - most stores hold nothing to release
        """Release connections and handles."""

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
