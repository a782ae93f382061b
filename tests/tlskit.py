"""Certificates for tests: a real CA (lumi.security.ca) issuing bundles into a folder.

``TlsKit(folder).tls("Front")`` is the live :class:`~lumi.transports.tls.Tls` of the service
``Front`` of the kit's app; ``foreign`` and ``expired`` make the certificates a server must
refuse; ``renew`` writes a new generation of a bundle the way ``lumi run`` does.
"""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

from lumi.security import identity
from lumi.security.bundle import write_bundle
from lumi.security.ca import CertificateAuthority, Issued
from lumi.transports.tls import CA_FILE, CERT_FILE, KEY_FILE, Pem, Tls, TlsFiles


class AnonymousTls(Tls):
    """A TLS client that trusts the CA but has no certificate of its own."""

    def __init__(self, ca: Path) -> None:
        self.files = TlsFiles(ca, ca, ca)
        self.generation = 0
        self.pem = Pem(ca.read_bytes(), b"", b"")
        self._server = None
        self._client = None

    def client_context(self) -> ssl.SSLContext:
        if self._client is None:
            self._client = ssl.create_default_context(cafile=str(self.files.ca))
        return self._client

    def reload(self) -> bool:
        return False


class TlsKit:
    """A CA for the app ``app`` and the bundles it issued, under ``folder``."""

    def __init__(self, folder: Path, app: str = "test", *, lifetime: float = 3600) -> None:
        self.folder = folder
        self.app = app
        self.lifetime = lifetime
        self.ca = CertificateAuthority.create(app)
        self._tls: dict[str, Tls] = {}

    def identity(self, name: str) -> str:
        return identity.service_id(self.app, name)

    def issue(self, name: str, *, lifetime: float | None = None, **kwargs: object) -> Issued:
        return self.ca.issue(
            self.identity(name),
            lifetime=self.lifetime if lifetime is None else lifetime,
            dns=(identity.server_name(self.app, name), "localhost"),
            ips=("127.0.0.1",),
            **kwargs,  # type: ignore[arg-type]
        )

    def write(self, name: str, issued: Issued, ca: bytes | None = None) -> Path:
        folder = self.folder / name
        write_bundle(
            folder,
            {CERT_FILE: issued.cert, KEY_FILE: issued.key, CA_FILE: ca or self.ca.cert_pem},
        )
        return folder

    def tls(self, name: str) -> Tls:
        """The (cached) live TLS material of service ``name``."""
        found = self._tls.get(name)
        if found is None:
            found = self._tls[name] = Tls(TlsFiles.in_folder(self.write(name, self.issue(name))))
        return found

    def server_name(self, name: str) -> str:
        return identity.server_name(self.app, name)

    def renew(self, name: str) -> Tls:
        """A new certificate for ``name`` in its bundle, loaded into its live material."""
        tls = self.tls(name)
        self.write(name, self.issue(name))
        assert tls.reload(), f"the renewed bundle of {name} did not load"
        return tls

    def foreign(self, name: str) -> Tls:
        """``name``'s identity signed by another CA (trusting this kit's CA)."""
        other = CertificateAuthority.create("other")
        issued = other.issue(self.identity(name), lifetime=self.lifetime)
        return Tls(TlsFiles.in_folder(self.write(f"foreign-{name}", issued)))

    def anonymous(self) -> Tls:
        """A client trusting this kit's CA, with no certificate."""
        self.tls("_anyone")  # writes the CA certificate into a bundle
        return AnonymousTls(self.folder / "_anyone" / CA_FILE)

    def serial(self, name: str) -> int:
        """The serial number of the certificate ``name``'s bundle holds now."""
        from cryptography import x509

        return x509.load_pem_x509_certificate(
            (self.folder / name / CERT_FILE).read_bytes()
        ).serial_number

    def expired(self, name: str) -> Tls:
        """``name``'s identity from this CA, past its lifetime."""
        start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=2)
        issued = self.issue(name, lifetime=60, not_before=start)
        return Tls(TlsFiles.in_folder(self.write(f"expired-{name}", issued)))
