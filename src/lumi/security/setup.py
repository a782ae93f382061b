"""What a replica takes from ``[security]``: its certificate, its channels' TLS settings, and
the guard around its handler.

A replica's bundle folder comes from its spec (``lumi run`` issues one per replica) or, for a
replica started by something else — a Kubernetes pod with its certificate from a Secret or
cert-manager — from ``$LUMI_TLS_DIR``: a folder holding ``tls.crt``, ``tls.key`` and
``ca.crt``, kept current by whoever issued it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from lumi.config import AppConfig
from lumi.model.errors import AppError, ConfigError
from lumi.model.interface import ServiceInterface
from lumi.security import identity
from lumi.security.guard import Guard, Hosted
from lumi.security.policy import policies
from lumi.transports.base import ChannelSettings, Transport
from lumi.transports.tls import Tls, TlsError, TlsFiles

TLS_DIR_VARIABLE = "LUMI_TLS_DIR"


def replica_tls(config: AppConfig, name: str, tls_dir: str | None) -> Tls | None:
    """The live certificate of the replica ``name`` (None with mTLS off)."""
    if not config.security.mtls:
        return None
    folder = tls_dir or os.environ.get(TLS_DIR_VARIABLE)
    if not folder:
        raise AppError(
            f"{name}: mTLS is on (security.mtls) but this replica was given no certificate: set "
            f"{TLS_DIR_VARIABLE} to a folder holding tls.crt, tls.key and ca.crt"
        )
    try:
        return Tls(TlsFiles.in_folder(folder))
    except TlsError as exc:
        raise AppError(f"{name}: {exc}") from None


def channel_settings(config: AppConfig, tls: Tls | None, callee: str) -> ChannelSettings | None:
    """How a caller holding ``tls`` connects to ``callee``: expecting its DNS name."""
    if tls is None:
        return None
    return ChannelSettings(tls=tls, server_name=identity.server_name(config.name, callee))


def check_transports(config: AppConfig, uses: Iterable[tuple[str, Transport]]) -> None:
    """ConfigError unless every transport used can carry mTLS when it is on."""
    if not config.security.mtls:
        return
    for name, transport in uses:
        if not transport.supports_tls:
            raise ConfigError(
                f"{config.path}: the RPC transport {name!r} does not support mTLS; set "
                f"security.mtls = false, or serve over http, grpc or thrift"
            )


def guard(
    config: AppConfig,
    interfaces: Mapping[str, ServiceInterface],
    served: Iterable[str],
    hosted: Hosted,
    *,
    relay: bool = False,
) -> Guard:
    """The guard of a replica serving ``served`` (the access tables checked against
    ``interfaces``, every service of the app); ``relay``: an activator's (see the guard)."""
    every = policies(config, interfaces)
    own = {name: every[name] for name in served}
    return Guard(config.name, own, mtls=config.security.mtls, hosted=hosted, relay=relay)
