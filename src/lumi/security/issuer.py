"""``lumi run``'s certificate issuer: the app's CA, and a short-lived certificate per identity.

The supervisor holds one :class:`Issuer`. It loads the app's CA (``.lumi/ca/``, created on
first run; or ``security.ca_dir``, your own, never written to), issues a bundle for each
replica (``Orders.0``) and for the operator, and renews each at half its lifetime
(``security.cert_lifetime``) by writing a new generation of the bundle
(:mod:`lumi.security.bundle`): replicas pick it up by themselves
(:meth:`lumi.transports.tls.Tls.watch`), so a renewal needs no restart and drops no call.

A replica's certificate names its SPIFFE identity (URI), the DNS name callers expect
(``orders.shop``), ``localhost`` and the address it listens on, so ``curl --cacert`` works
against ``https://127.0.0.1:PORT``; the operator's is a client certificate.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import time
from pathlib import Path

from lumi.config import AppConfig
from lumi.model.errors import AppError
from lumi.paths import AppPaths, private_dir
from lumi.security import identity
from lumi.security.bundle import write_bundle
from lumi.security.ca import CertificateAuthority
from lumi.transports.tls import CA_FILE, CERT_FILE, KEY_FILE, Tls, TlsError, TlsFiles

log = logging.getLogger("lumi.security")

OPERATOR = "operator"


@dataclasses.dataclass
class _Holder:
    uri: str
    service: str | None  # None: the operator
    renew_at: float = 0.0


class Issuer:
    """The CA of the app in ``config`` and the bundles it keeps current."""

    def __init__(self, config: AppConfig) -> None:
        security = config.security
        self.app = config.name
        self.lifetime = security.cert_lifetime
        self.paths = AppPaths(config.root)
        if security.ca_dir:
            folder = (config.root / security.ca_dir).resolve()
            self.ca = CertificateAuthority.load(folder, key_type=security.key_type)
        else:
            folder = private_dir(self.paths.ca)
            keep = max(self.lifetime * 2, 30 * 86400.0)  # renew the CA well before it expires
            self.ca = CertificateAuthority.load_or_create(
                folder, self.app, key_type=security.key_type, min_left=keep
            )
        self.ca_folder = folder
        private_dir(self.paths.certs(OPERATOR).parent)  # the bundles' folder: 0700 too
        host = config.defaults.host
        self.ips = ("127.0.0.1",) + ((host,) if _is_ip(host) and host != "127.0.0.1" else ())
        self._holders: dict[str, _Holder] = {}

    def folder(self, name: str) -> Path:
        return self.paths.certs(name)

    def issue_replica(self, service: str, index: int) -> Path:
        """Issue (or re-issue) the bundle of replica ``index`` of ``service``; its folder."""
        return self._issue(f"{service}.{index}", _Holder(identity.service_id(self.app, service),
                                                          service))  # fmt: skip

    def issue_operator(self) -> Path:
        """Issue the operator's bundle (``lumi call``, the dashboard, curl); its folder."""
        return self._issue(OPERATOR, _Holder(identity.operator_id(self.app), None))

    def _issue(self, name: str, holder: _Holder) -> Path:
        service = holder.service
        issued = self.ca.issue(
            holder.uri,
            lifetime=self.lifetime,
            dns=(identity.server_name(self.app, service), "localhost") if service else (),
            ips=self.ips if service else (),
            server=service is not None,
        )
        folder = self.folder(name)
        write_bundle(
            folder, {CERT_FILE: issued.cert, KEY_FILE: issued.key, CA_FILE: self.ca.cert_pem}
        )
        holder.renew_at = time.monotonic() + self.lifetime / 2
        self._holders[name] = holder
        return folder

    def renew_due(self) -> list[str]:
        """Renew every bundle past half its lifetime; the names renewed."""
        now = time.monotonic()
        due = [name for name, holder in self._holders.items() if holder.renew_at <= now]
        for name in due:
            self._issue(name, self._holders[name])
        return due

    def forget(self, name: str) -> None:
        self._holders.pop(name, None)

    @property
    def interval(self) -> float:
        """How often to look for bundles to renew."""
        return min(max(self.lifetime / 8, 0.25), 10.0)

    async def run(self) -> None:
        """Renew bundles as they come due, until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                renewed = self.renew_due()
            except OSError as exc:  # a full disk must not stop the app; retried next time
                log.error("renewing certificates failed: %s", exc)
                continue
            if renewed:
                log.debug("renewed the certificates of %s", ", ".join(renewed))


def operator_tls(root: Path) -> Tls:
    """The operator identity of the app running from ``root`` (what ``lumi run`` issued);
    AppError when there is none to read."""
    try:
        return Tls(TlsFiles.in_folder(AppPaths(root).operator_certs))
    except TlsError as exc:
        raise AppError(f"cannot call the app as its operator: {exc}") from None


def _is_ip(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return not address.is_unspecified
