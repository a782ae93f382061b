"""Any OCI distribution registry (Docker's registry, Harbor, GHCR, ECR, Zot, ...) via ``oras``.

``oras`` gives the HTTP session, the container-URL grammar and the credentials (basic auth from
the environment or a docker-style ``config.json``, including credential helpers). Lumi sends
manifests as its own bytes — ``oras``' ``upload_manifest`` re-serializes JSON, which would
change the digest — and streams blobs in both directions to show progress and to stop reading
past a blob's declared size.

Credentials, first found wins: ``username``/``password`` given to the store;
``LUMI_REGISTRY_USERNAME`` + ``LUMI_REGISTRY_PASSWORD``; the ``auths`` entry for the host in
``LUMI_REGISTRY_AUTH_FILE``, ``REGISTRY_AUTH_FILE`` (podman's), ``$DOCKER_CONFIG/config.json``
or ``~/.docker/config.json``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import oras.auth.utils
import oras.provider
import requests

from lumi.packaging import oci
from lumi.packaging.errors import AuthError, RepositoryError
from lumi.packaging.store.base import Progress, Store, TagTaken, no_progress

_CHUNK = 1 << 20
_ACCEPT = f"{oci.MANIFEST_MEDIA_TYPE}, {oci.INDEX_MEDIA_TYPE}"


class _Oras(oras.provider.Registry):  # type: ignore[misc]
    # oras retries every failed request five times with sleeps of 3 to 83 seconds; a CLI that
    # meets a stopped registry or a wrong password must say so at once.
    do_request = oras.provider.Registry.do_request.__wrapped__


def auth_files() -> list[Path]:
    """The docker-style auth files consulted, in order."""
    files = [os.environ.get("LUMI_REGISTRY_AUTH_FILE"), os.environ.get("REGISTRY_AUTH_FILE")]
    if os.environ.get("DOCKER_CONFIG"):
        files.append(str(Path(os.environ["DOCKER_CONFIG"]) / "config.json"))
    files.append(str(Path("~/.docker/config.json").expanduser()))
    return [Path(f) for f in files if f]


def find_credentials(host: str) -> tuple[str, str] | None:
    """``(username, password)`` for ``host`` from the environment or an auth file."""
    user, password = (
        os.environ.get("LUMI_REGISTRY_USERNAME"),
        os.environ.get("LUMI_REGISTRY_PASSWORD"),
    )
    if user and password:
        return user, password
    for file in auth_files():
        if not file.is_file():
            continue
        entry = oras.auth.utils.load_configs([str(file)]).get("auths", {}).get(host)
        if not isinstance(entry, dict) or not entry.get("auth"):
            continue
        try:
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthError(f"{file}: auths[{host!r}].auth is not base64 'user:password'") from None
        return user, password
    return None


class RegistryStore(Store):
    """The registry at ``url`` (``http://host:port``, ``https://host`` or ``oci://host``;
    ``oci://`` means TLS)."""

    atomic_tags = False  # the distribution API has no conditional PUT (see put_manifest)

    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        tls_verify: bool | str = True,
        timeout: float = 60.0,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https", "oci") or not parts.netloc:
            raise RepositoryError(f"{url!r} is not a registry URL (http://host:port or oci://host)")
        self.host = parts.netloc
        self.url = f"{parts.scheme}://{self.host}"
        self.insecure = parts.scheme == "http"
        self.timeout = timeout
        creds = (username, password) if username and password else find_credentials(self.host)
        self.username = creds[0] if creds else None
        self._client = _Oras(hostname=self.host, insecure=self.insecure, tls_verify=tls_verify,
                             auth_backend="basic")  # fmt: skip
        self._headers: dict[str, str] = {}
        if creds:
            self._client.auth.set_basic_auth(*creds)
            self._headers = dict(self._client.auth.get_auth_header())

    # --- HTTP -----------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self._client.prefix}://{self.host}{path}"

    def _request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        headers = {**self._headers, **kwargs.pop("headers", {})}
        try:
            response: requests.Response = self._client.session.request(
                method, url, headers=headers, timeout=self.timeout,
                verify=self._client._tls_verify, **kwargs,
            )  # fmt: skip
        except requests.ConnectionError as exc:
            reason = "connection refused" if "refused" in str(exc).lower() else type(exc).__name__
            raise RepositoryError(f"cannot reach the registry at {self.url}: {reason}") from None
        except requests.RequestException as exc:
            raise RepositoryError(f"registry {self.url}: {method} failed: {exc}") from None
        if response.status_code == 401:
            response.close()
            if self.username is None:
                raise AuthError(
                    f"registry {self.url} requires a login: set LUMI_REGISTRY_USERNAME and "
                    f"LUMI_REGISTRY_PASSWORD, or add it to a docker-style auth file"
                )
            raise AuthError(
                f"registry {self.url} refused the password of user {self.username!r} (HTTP 401)"
            )
        if response.status_code == 403:
            response.close()
            raise AuthError(
                f"registry {self.url} denied {method} {urllib.parse.urlsplit(url).path}"
            )
        return response

    def _check(self, response: requests.Response, what: str) -> requests.Response:
        if response.status_code < 300:
            return response
        detail = ""
        try:
            errors = response.json().get("errors") or []
            detail = f": {errors[0].get('message', '')}" if errors else ""
        except (ValueError, AttributeError):
            pass
        raise RepositoryError(f"registry {self.url}: {what}: HTTP {response.status_code}{detail}")

    # --- Store ----------------------------------------------------------------------------

    async def has_blob(self, repo: str, digest: str) -> bool:
        def head() -> bool:
            url = self._url(f"/v2/{repo}/blobs/{oci.check_digest(digest)}")
            response = self._request("HEAD", url)
            return response.status_code == 200

        return await asyncio.to_thread(head)

    async def put_blob(
        self, repo: str, digest: str, data: bytes, progress: Progress = no_progress
    ) -> None:
        advance = progress(f"↑ {repo} {digest[7:19]}", len(data))
        await asyncio.to_thread(self._upload, repo, digest, data, advance)

    def _upload(self, repo: str, digest: str, data: bytes, advance: Callable[[int], None]) -> None:
        start = self._check(self._request("POST", self._url(f"/v2/{repo}/blobs/uploads/")),
                            f"start upload to {repo}")  # fmt: skip
        location = start.headers.get("Location", "")
        if not location:
            raise RepositoryError(f"registry {self.url}: upload to {repo} gave no Location")
        if not location.startswith("http"):
            location = self._url(location)
        target = oras.utils.append_url_params(location, {"digest": digest})
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(data))}
        response = self._request("PUT", target, data=_Reader(data, advance), headers=headers)
        self._check(response, f"upload {digest[:19]}… to {repo}")

    async def get_blob(
        self, repo: str, digest: str, size: int, progress: Progress = no_progress
    ) -> bytes | None:
        def download() -> bytes | None:
            url = self._url(f"/v2/{repo}/blobs/{oci.check_digest(digest)}")
            with self._request("GET", url, stream=True) as response:
                if response.status_code == 404:
                    return None
                self._check(response, f"download {digest[:19]}… from {repo}")
                advance = progress(f"↓ {repo} {digest[7:19]}", size)
                # Read straight into one buffer of the declared size (+1 byte, enough to see a
                # swollen blob): no list of chunks to join, and never more than that in memory.
                buffer = bytearray(size + 1)
                view, total = memoryview(buffer), 0
                while total <= size:
                    count = response.raw.readinto(view[total : total + _CHUNK])
                    if not count:
                        break
                    total += count
                    advance(count)
                view.release()
                del buffer[total:]
                return bytes(buffer)

        return await asyncio.to_thread(download)

    async def put_manifest(
        self, repo: str, tag: str, data: bytes, media_type: str, *, create: bool = False
    ) -> None:
        if create:
            # The distribution API has no conditional PUT: this check narrows the race of two
            # pushes of one version to the moment between it and the PUT below. For a hard
            # guarantee, turn on the registry's tag immutability (ECR, Harbor, GHCR rules).
            existing = await self.get_manifest(repo, tag)
            if existing is not None and oci.digest_of(existing) != oci.digest_of(data):
                raise TagTaken(oci.digest_of(existing))

        def put() -> requests.Response:
            url = self._url(f"/v2/{repo}/manifests/{oci.check_tag(tag)}")
            return self._request("PUT", url, data=data, headers={"Content-Type": media_type})

        # While another client commits the same blob (a layer shared by two pushes), the
        # filesystem driver of distribution rewrites it in place, and a manifest naming it is
        # refused as DIGEST_INVALID/BLOB_UNKNOWN for a moment; it is accepted once that ends.
        for delay in (0.05, 0.1, 0.2, 0.4, 0.8, None):
            response = await asyncio.to_thread(put)
            if (
                delay is None
                or response.status_code != 400
                or _error_code(response)
                not in ("DIGEST_INVALID", "MANIFEST_BLOB_UNKNOWN", "BLOB_UNKNOWN")
            ):
                break
            await asyncio.sleep(delay)
        self._check(response, f"tag {repo}:{tag}")

    async def get_manifest(self, repo: str, reference: str) -> bytes | None:
        def get() -> bytes | None:
            url = self._url(f"/v2/{repo}/manifests/{reference}")
            response = self._request("GET", url, headers={"Accept": _ACCEPT})
            if response.status_code == 404:
                return None
            return self._check(response, f"manifest {repo}:{reference}").content

        return await asyncio.to_thread(get)

    async def tags(self, repo: str) -> list[str]:
        pages = await asyncio.to_thread(self._paged, f"/v2/{repo}/tags/list?n=1000", "tags")
        return sorted(pages)

    async def repositories(self) -> list[str]:
        return sorted(await asyncio.to_thread(self._paged, "/v2/_catalog?n=1000", "repositories"))

    def _paged(self, path: str, key: str) -> list[str]:
        out: list[str] = []
        url: str | None = self._url(path)
        while url:
            response = self._request("GET", url)
            if response.status_code == 404:  # NAME_UNKNOWN: no such repository yet
                return out
            self._check(response, f"list {key}")
            out += response.json().get(key) or []
            link = response.links.get("next", {}).get("url")
            url = urllib.parse.urljoin(url, link) if link else None
        return out

    async def aclose(self) -> None:
        self._client.session.close()


def _error_code(response: requests.Response) -> str:
    try:
        errors = response.json().get("errors") or []
        return str(errors[0].get("code", "")) if errors else ""
    except (ValueError, AttributeError):
        return ""


class _Reader:
    """A body requests can measure (``__len__``) and http.client streams (``read``), counting
    bytes as they leave."""

    def __init__(self, data: bytes, advance: Callable[[int], None]) -> None:
        self._view = memoryview(data)
        self._offset = 0
        self._advance = advance

    def __len__(self) -> int:
        return len(self._view)

    def read(self, size: int = -1) -> bytes:
        end = (
            len(self._view) if size < 0 else min(len(self._view), self._offset + max(size, _CHUNK))
        )
        chunk = bytes(self._view[self._offset : end])
        self._offset = end
        if chunk:
            self._advance(len(chunk))
        return chunk
