"""The embedded store: one OCI image-layout directory (image-spec ``image-layout.md``).

::

    <root>/oci-layout        {"imageLayoutVersion": "1.0.0"}
    <root>/index.json        one entry per tag, annotated org.opencontainers.image.ref.name =
                             "<repo>:<tag>" (every service shares the blobs, so a wheel common
                             to four services is stored once)
    <root>/blobs/sha256/<hex>

Blobs are written to a temporary file and renamed into place; index.json is rewritten under an
exclusive ``flock`` and replaced atomically, so concurrent publishers never lose a tag and a
reader never sees half a file.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lumi.packaging import oci
from lumi.packaging.errors import RepositoryError
from lumi.packaging.store.base import Progress, Store, TagTaken, no_progress

REF_NAME = "org.opencontainers.image.ref.name"
_CHUNK = 1 << 20


class LayoutStore(Store):
    """An OCI image layout at ``root`` (created on first write)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        self.url = f"oci-layout:{self.root}"

    def _blob_path(self, digest: str) -> Path:
        algorithm, _, hexdigest = oci.check_digest(digest).partition(":")
        return self.root / "blobs" / algorithm / hexdigest

    def _ensure(self) -> None:
        try:
            (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
            marker = self.root / "oci-layout"
            if not marker.exists():
                _atomic_write(marker, oci.canonical_json({"imageLayoutVersion": "1.0.0"}))
            if not (self.root / "index.json").exists():
                _atomic_write(self.root / "index.json", _index_bytes([]))
        except OSError as exc:
            raise RepositoryError(f"{self.root}: cannot write the repository: {exc}") from None

    async def has_blob(self, repo: str, digest: str) -> bool:
        return self._blob_path(digest).is_file()

    async def put_blob(
        self, repo: str, digest: str, data: bytes, progress: Progress = no_progress
    ) -> None:
        advance = progress(f"↑ {repo} {digest[7:19]}", len(data))
        path = self._blob_path(digest)
        if not path.exists():
            await asyncio.to_thread(self._write_blob, path, data)
        advance(len(data))

    def _write_blob(self, path: Path, data: bytes) -> None:
        self._ensure()
        _atomic_write(path, data)

    async def get_blob(
        self, repo: str, digest: str, size: int, progress: Progress = no_progress
    ) -> bytes | None:
        path = self._blob_path(digest)
        if not path.is_file():
            return None
        advance = progress(f"↓ {repo} {digest[7:19]}", size)
        return await asyncio.to_thread(_read_bounded, path, size, advance)

    async def put_manifest(
        self, repo: str, tag: str, data: bytes, media_type: str, *, create: bool = False
    ) -> None:
        digest = oci.digest_of(data)
        await asyncio.to_thread(self._tag, repo, tag, digest, data, media_type, create)

    def _tag(
        self, repo: str, tag: str, digest: str, data: bytes, media_type: str, create: bool
    ) -> None:
        self._ensure()
        path = self._blob_path(digest)
        if not path.exists():
            _atomic_write(path, data)
        ref = f"{repo}:{tag}"
        with self._locked():  # the check and the write under one lock: two creators, one wins
            entries = []
            for e in self._entries():
                if e.get("annotations", {}).get(REF_NAME) != ref:
                    entries.append(e)
                elif create and e.get("digest") != digest:
                    raise TagTaken(str(e.get("digest")))
            entry: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": len(data),
                                     "annotations": {REF_NAME: ref}}  # fmt: skip
            artifact_type = json.loads(data).get("artifactType")
            if artifact_type:
                entry["artifactType"] = artifact_type
            entries.append(entry)
            _atomic_write(self.root / "index.json", _index_bytes(entries))

    async def get_manifest(self, repo: str, reference: str) -> bytes | None:
        if reference.startswith("sha256:"):
            digest: str | None = reference
        else:
            digest = next(
                (
                    e["digest"]
                    for e in self._entries()
                    if e.get("annotations", {}).get(REF_NAME) == f"{repo}:{reference}"
                ),
                None,
            )
        if digest is None or not self._blob_path(digest).is_file():
            return None
        return await asyncio.to_thread(_read_bounded, self._blob_path(digest), 4 << 20, None)

    async def tags(self, repo: str) -> list[str]:
        prefix = f"{repo}:"
        return sorted(
            ref[len(prefix) :]
            for ref in (e.get("annotations", {}).get(REF_NAME, "") for e in self._entries())
            if ref.startswith(prefix)
        )

    async def repositories(self) -> list[str]:
        refs = (e.get("annotations", {}).get(REF_NAME, "") for e in self._entries())
        return sorted({ref.rpartition(":")[0] for ref in refs if ":" in ref})

    def _entries(self) -> list[dict[str, Any]]:
        try:
            index = json.loads((self.root / "index.json").read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise RepositoryError(f"{self.root}/index.json: unreadable: {exc}") from None
        manifests = index.get("manifests") if isinstance(index, dict) else None
        if not isinstance(manifests, list):
            raise RepositoryError(f"{self.root}/index.json: not an OCI image index")
        return [m for m in manifests if isinstance(m, dict)]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.root / "index.json.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _index_bytes(entries: list[dict[str, Any]]) -> bytes:
    entries = sorted(entries, key=lambda e: str(e.get("annotations", {}).get(REF_NAME, "")))
    index = {"schemaVersion": 2, "mediaType": oci.INDEX_MEDIA_TYPE, "manifests": entries}
    return json.dumps(index, indent=2, sort_keys=True).encode() + b"\n"


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _read_bounded(path: Path, size: int, advance: Any) -> bytes:
    # One byte past the expected size is enough to know the blob is wrong.
    chunks, total = [], 0
    with open(path, "rb") as blob:
        while total <= size:
            chunk = blob.read(min(_CHUNK, size + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if advance is not None:
                advance(len(chunk))
    return b"".join(chunks)
