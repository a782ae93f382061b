"""Identities: who a certificate says its holder is, in SPIFFE form.

Every service of an app has the identity ``spiffe://<app>/<service>`` — the *trust domain* is
the app's name in lower case, the path the service's name — carried as the URI subject
alternative name of its certificate. The operator (``lumi call``, the dashboard, ``curl`` with
the operator certificate) is ``spiffe://<app>/lumi/operator``: two path segments, so no service
name can collide with it.

A certificate also names its holder for TLS clients that check host names (gRPC always does):
the DNS name ``<service>.<app>`` in lower case (``_`` becomes ``-``), which a caller asks for
when it connects to that service, so a replica of one service cannot answer as another. In
Kubernetes it is the service's DNS name when the namespace is the app's name.
"""

from __future__ import annotations

import dataclasses
import functools

SCHEME = "spiffe://"
OPERATOR_PATH = "lumi/operator"
OPERATOR = "operator"
"""The name that stands for the operator identity in access policies."""


def trust_domain(app: str) -> str:
    """The SPIFFE trust domain of an app: its name in lower case."""
    return app.lower()


def service_id(app: str, service: str) -> str:
    """``spiffe://shop/Orders``."""
    return f"{SCHEME}{trust_domain(app)}/{service}"


def operator_id(app: str) -> str:
    """``spiffe://shop/lumi/operator``."""
    return f"{SCHEME}{trust_domain(app)}/{OPERATOR_PATH}"


def server_name(app: str, service: str) -> str:
    """The DNS name a caller expects in ``service``'s certificate: ``orders.shop``."""
    label = service.lower().replace("_", "-")
    return f"{label}.{trust_domain(app).replace('_', '-')}"


@dataclasses.dataclass(frozen=True)
class Identity:
    """A parsed SPIFFE identity."""

    trust_domain: str
    path: str

    @classmethod
    def parse(cls, uri: str | None) -> Identity | None:
        """The identity of ``spiffe://domain/path``; None for anything else."""
        return _parse(uri) if uri else None

    @property
    def uri(self) -> str:
        return f"{SCHEME}{self.trust_domain}/{self.path}"

    def service(self, app: str) -> str | None:
        """The service name this identity is, if it is one of ``app``'s services."""
        if self.trust_domain != trust_domain(app) or "/" in self.path:
            return None
        return self.path

    def is_operator(self, app: str) -> bool:
        return self.trust_domain == trust_domain(app) and self.path == OPERATOR_PATH

    def belongs_to(self, app: str) -> bool:
        return self.trust_domain == trust_domain(app)


@functools.lru_cache(maxsize=1024)
def _parse(uri: str) -> Identity | None:
    # Every call's guard parses its caller; an app has a handful of identities.
    if not uri.startswith(SCHEME):
        return None
    domain, sep, path = uri[len(SCHEME) :].partition("/")
    if not domain or not sep or not path:
        return None
    return Identity(domain, path)
