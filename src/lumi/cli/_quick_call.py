"""The common ``lumi call``: one HTTP/JSON call to a running app, made with the standard library
only (``ssl`` with the operator's certificate when the app runs mTLS).

The full path (the client pipeline: balancer, retries, every transport, mTLS) imports asyncio,
pydantic and the transports, several times what the call itself costs (``bench/cli_bench.py``).
This path reads the registry and the interface as JSON and sends one request; whenever it is
not sure it would answer the way the full path does — the app not running, a name to suggest
for, another transport, a TLS handshake refused, no replica accepting the connection,
``UNAVAILABLE`` — it returns
``None`` before anything was processed, and the full path takes over (with its errors and its
retries)."""

from __future__ import annotations

import json
import os
import secrets
import socket
import ssl
import time
import urllib.parse
from pathlib import Path
from typing import Any

from lumi.model.errors import DeadlineExceeded, LumiError, Unavailable
from lumi.paths import AppPaths

_UNAVAILABLE = 503
# The bundle layout of lumi.transports.tls (not imported: it brings asyncio along).
CERT_FILE, KEY_FILE, CA_FILE = "tls.crt", "tls.key", "ca.crt"


class Answer:
    """What the call returned (``value``); errors are raised as the callee's LumiError."""

    def __init__(self, value: Any) -> None:
        self.value = value


class Prepared:
    """A call that can go the quick way: the service's HTTP endpoints and the method's entry
    of the interface JSON (``params``, ``param_order``, ``idempotent``)."""

    def __init__(
        self,
        service: str,
        method: str,
        urls: list[str],
        info: dict[str, Any],
        tls: tuple[ssl.SSLContext, str] | None = None,
    ) -> None:
        self.service, self.method, self.urls, self.info = service, method, urls, info
        self.tls = tls  # mTLS: the operator's context and the name the callee's cert holds

    @property
    def properties(self) -> dict[str, Any]:
        props = self.info.get("params", {}).get("properties", {})
        return props if isinstance(props, dict) else {}

    @property
    def param_names(self) -> list[str]:
        return list(self.info.get("param_order") or sorted(self.properties))

    def send(self, arguments: dict[str, Any], timeout: float) -> Answer | None:
        """The answer, or ``None`` if no replica took the call (or it was UNAVAILABLE, or lost
        while idempotent): then the full path, which retries, makes it."""
        idempotent = bool(self.info.get("idempotent"))
        headers = {
            "x-correlation-id": secrets.token_hex(16),
            "x-lumi-deadline": str(int((time.time() + timeout) * 1000)),
        }
        if not idempotent:  # the callee answers a repeated key from its first result
            headers["idempotency-key"] = secrets.token_hex(16)
        body = json.dumps(arguments, ensure_ascii=False).encode()
        target = urllib.parse.quote(f"/{self.service}/{self.method}")
        start = os.urandom(1)[0] % len(self.urls)  # spread calls as the balancer does
        for url in self.urls[start:] + self.urls[:start]:
            host, _, port = url.partition("://")[2].rstrip("/").rpartition(":")
            try:
                sock = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
            except (OSError, ValueError):
                continue  # not sent: the next replica, as the balancer skips it
            if self.tls is not None:
                context, name = self.tls
                try:
                    sock = context.wrap_socket(sock, server_hostname=name)
                except OSError:  # refused or unverifiable: nothing sent; the full path says why
                    sock.close()
                    return None
            try:
                with sock:
                    status, payload = _exchange(sock, f"{host}:{port}", target, headers, body)
            except TimeoutError:
                raise DeadlineExceeded(
                    f"{self.service}.{self.method} did not answer before the deadline"
                ) from None
            except OSError as exc:
                if idempotent:
                    return None  # the full path retries a lost idempotent call
                raise Unavailable(
                    f"{self.service}.{self.method} at {url}: {type(exc).__name__}: {exc}"
                ) from None
            if status == _UNAVAILABLE:
                return None  # the full path retries UNAVAILABLE with backoff
            if status == 200:
                return Answer(json.loads(payload) if payload else None)
            raise LumiError.from_http(status, payload)
        return None


def prepare(root: Path, service: str, method: str, transport: str | None) -> Prepared | None:
    """The quick call of ``service.method``, if HTTP is the chosen (or first) transport, the
    method is in the interface and (with mTLS) the operator's certificate loads; otherwise
    ``None``."""
    found = _http_endpoints(root, service, transport)
    if found is None:
        return None
    urls, app, mtls = found
    info = _method(root, service, method)
    if info is None:
        return None
    tls = None
    if mtls:
        tls = _operator_context(root, app, service)
        if tls is None:
            return None
    return Prepared(service, method, urls, info, tls)


def _http_endpoints(
    root: Path, service: str, transport: str | None
) -> tuple[list[str], str, bool] | None:
    """The service's HTTP endpoints, the app's name and whether it runs mTLS, if HTTP is the
    chosen (or first) transport; otherwise ``None``."""
    try:
        registry = json.loads(AppPaths(root).registry.read_text())
        pid = registry["supervisor_pid"]
        endpoints = registry["services"][service]["endpoints"]
        app = registry["app"]
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    mtls = registry.get("mtls", False)
    if not endpoints or not isinstance(app, str) or not isinstance(mtls, bool):
        return None
    if not all(isinstance(url, str) for url in endpoints):
        return None
    if (transport or endpoints[0].partition("://")[0]) != "http":
        return None
    urls = [url for url in endpoints if url.startswith("http://")]
    return (urls, app, mtls) if urls else None


def _operator_context(root: Path, app: str, service: str) -> tuple[ssl.SSLContext, str] | None:
    """The operator's client context (as ``lumi.transports.tls`` builds it) and the name in
    ``service``'s certificate; ``None`` if the bundle does not load."""
    from lumi.security.identity import server_name

    folder = AppPaths(root).operator_certs
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(folder / CERT_FILE, folder / KEY_FILE)
        context.load_verify_locations(folder / CA_FILE)
    except (OSError, ValueError):
        return None
    return context, server_name(app, service)


def _method(root: Path, service: str, method: str) -> dict[str, Any] | None:
    try:
        iface = json.loads((AppPaths(root).interfaces / f"{service}.json").read_text())
        info = iface["methods"][method]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info if isinstance(info, dict) else None


def _exchange(
    sock: socket.socket, host: str, target: str, headers: dict[str, str], body: bytes
) -> tuple[int, bytes]:
    """One request, ``connection: close``; the status and the body of the answer."""
    head = f"POST {target} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
    head += f"content-length: {len(body)}\r\nconnection: close\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    sock.sendall(head.encode("ascii") + b"\r\n" + body)
    data = bytearray()
    while chunk := sock.recv(65536):
        data += chunk
    status_line, _, rest = bytes(data).partition(b"\r\n")
    header_block, _, payload = rest.partition(b"\r\n\r\n")
    try:
        status = int(status_line.split()[1])
    except (IndexError, ValueError):
        raise LumiError.from_http(0, bytes(data[:200])) from None
    for line in header_block.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            payload = payload[: int(value)]
    return status, payload
