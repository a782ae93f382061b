"""TLS through the transport seam: one identity's certificate, for serving and for calling.

A :class:`Tls` holds the PEM files of one identity (:class:`TlsFiles`: its certificate chain,
its key and the CA bundle it trusts) and the live :class:`ssl.SSLContext` objects built from
them. Every transport takes it the same way — ``ServerSettings.tls`` for a server,
``ChannelSettings.tls`` for a channel — and uses what its library takes: the contexts (HTTP,
Thrift, asyncio streams) or the PEM bytes with a generation number (gRPC).

* Servers ask for a client certificate but do not require one (``CERT_OPTIONAL``): a caller
  without one may still reach a public method, and is told UNAUTHENTICATED for any other. A
  certificate that is presented must chain to the CA bundle and be within its lifetime, or the
  handshake fails.
* Channels require the server's certificate to chain to the CA bundle and to name the DNS name
  ``ChannelSettings.server_name`` (the callee's, see :mod:`lumi.security.identity`).
* :meth:`Tls.reload` (run every second by :meth:`Tls.watch`) loads renewed files into the live
  contexts: new handshakes use the new certificate, connections already open keep theirs, so a
  renewal drops no call.

The verified peer identity is the SPIFFE URI in the peer certificate's subject alternative
names (:func:`peer_identity`); servers put it in ``Metadata.caller``, never a header.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import ssl
from pathlib import Path
from typing import Any

from lumi.model.errors import LumiError, Unauthenticated

log = logging.getLogger("lumi.tls")

CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
CA_FILE = "ca.crt"
SPIFFE = "spiffe://"


class TlsError(Exception):
    """TLS files that cannot be loaded; the message names the files, never their contents."""


@dataclasses.dataclass(frozen=True)
class TlsFiles:
    """Where one identity's TLS material is: PEM files."""

    cert: Path  # the certificate chain, leaf first
    key: Path
    ca: Path  # the CA certificates peers must chain to

    @classmethod
    def in_folder(cls, folder: str | os.PathLike[str]) -> TlsFiles:
        """``tls.crt``, ``tls.key`` and ``ca.crt`` in ``folder``: the layout of a Kubernetes
        TLS Secret (with cert-manager's ``ca.crt``) and of ``lumi run``'s certificates."""
        path = Path(folder)
        return cls(path / CERT_FILE, path / KEY_FILE, path / CA_FILE)

    def resolved(self) -> TlsFiles:
        """The same files with symbolic links resolved: one generation of a renewal."""
        return TlsFiles(*(Path(os.path.realpath(p)) for p in (self.cert, self.key, self.ca)))


@dataclasses.dataclass(frozen=True)
class Pem:
    """The PEM bytes of one generation (for libraries that take bytes, like gRPC)."""

    ca: bytes
    cert: bytes
    key: bytes = dataclasses.field(repr=False)


class Tls:
    """One identity's live TLS material (see the module docstring)."""

    def __init__(self, files: TlsFiles) -> None:
        self.files = files
        self.generation = 0
        self._server: ssl.SSLContext | None = None
        self._client: ssl.SSLContext | None = None
        self._stamp: tuple[Any, ...] | None = None
        self._current = files.resolved()
        self.pem = self._load(self._current)
        self._stamp = self._stamp_of()

    def __repr__(self) -> str:
        return f"<Tls {self.files.cert} generation {self.generation}>"

    def _stamp_of(self) -> tuple[Any, ...]:
        stamp: list[Any] = []
        for path in (self.files.cert, self.files.key, self.files.ca):
            try:
                info = os.stat(path)
                stamp.append((os.path.realpath(path), info.st_mtime_ns, info.st_size, info.st_ino))
            except OSError:
                stamp.append(None)
        return tuple(stamp)

    @staticmethod
    def _load(files: TlsFiles) -> Pem:
        """Read and check one generation (a scratch context loads it first)."""
        try:
            scratch = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            scratch.load_cert_chain(files.cert, files.key)
            scratch.load_verify_locations(files.ca)
            return Pem(files.ca.read_bytes(), files.cert.read_bytes(), files.key.read_bytes())
        except (OSError, ssl.SSLError) as exc:
            what = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
            raise TlsError(
                f"cannot load the TLS certificate {files.cert} with key {files.key} and CA "
                f"{files.ca}: {what}"
            ) from None

    def server_context(self) -> ssl.SSLContext:
        """The context servers wrap connections in (built once, updated in place)."""
        if self._server is None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.verify_mode = ssl.CERT_OPTIONAL
            # No TLS 1.3 session tickets: Lumi's channels keep connections open and never
            # resume, so the two tickets OpenSSL sends after each handshake are work for nothing.
            context.num_tickets = 0
            self._fill(context)
            self._server = context
        return self._server

    def client_context(self) -> ssl.SSLContext:
        """The context channels connect with (built once, updated in place)."""
        if self._client is None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            self._fill(context)
            self._client = context
        return self._client

    def _fill(self, context: ssl.SSLContext) -> None:
        context.load_cert_chain(self._current.cert, self._current.key)
        context.load_verify_locations(self._current.ca)

    def reload(self) -> bool:
        """Load the files again if they changed; True if a new generation is now in use.

        A generation that does not load (a renewal half-written by a tool that does not swap
        files atomically) is skipped, keeping the one in use, and tried again next time.
        """
        stamp = self._stamp_of()
        if stamp == self._stamp:
            return False
        current = self.files.resolved()
        try:
            pem = self._load(current)
        except TlsError as exc:
            log.warning("keeping the current certificate: %s", exc)
            return False
        self._current, self.pem, self._stamp = current, pem, stamp
        for context in (self._server, self._client):
            if context is not None:
                self._fill(context)  # affects new handshakes only
        self.generation += 1
        log.info("loaded renewed TLS certificate %s (generation %d)", self.files.cert,
                 self.generation)  # fmt: skip
        return True

    async def watch(self, interval: float = 1.0) -> None:
        """Reload renewed files every ``interval`` seconds, until cancelled."""
        while True:
            await asyncio.sleep(interval)
            self.reload()


def peer_identity(cert: dict[str, Any] | None) -> str | None:
    """The SPIFFE URI of a verified peer certificate (``SSLObject.getpeercert()``), if it has
    exactly one; None for no certificate or one without a single SPIFFE identity."""
    if not cert:
        return None
    uris = [v for kind, v in cert.get("subjectAltName", ()) if kind == "URI"]
    spiffe = [uri for uri in uris if isinstance(uri, str) and uri.startswith(SPIFFE)]
    return spiffe[0] if len(spiffe) == 1 and len(uris) == 1 else None


def transport_identity(transport: Any) -> str | None:
    """The verified peer identity of an asyncio transport (None when it is not TLS)."""
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    return peer_identity(ssl_object.getpeercert())


def handshake_failure(exc: BaseException | None, what: str) -> LumiError:
    """The error a caller gets when TLS between it and ``what`` could not be agreed:
    UNAUTHENTICATED, saying which side refused and why (no certificate contents)."""
    exc = getattr(exc, "certificate_error", None) or exc  # aiohttp wraps the ssl error
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or exc
        return Unauthenticated(f"{what}: its certificate is not accepted: {reason}")
    text = exc.reason if isinstance(exc, ssl.SSLError) and exc.reason else str(exc)
    reason = text.lower().replace("_", " ") or "no reason given"
    return Unauthenticated(f"{what}: the TLS handshake failed: {reason}")
