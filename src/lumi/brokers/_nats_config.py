"""The NATS broker's configuration from the ``events`` URL, and its names (no client import).

``nats://host1:4222,host2:4222?stream=LUMI&prefix=lumi&lease=30s&user=app&password=${NATS_PW}``
"""

from __future__ import annotations

import hashlib
import re
import ssl
from typing import Any

from lumi.brokers import _options as opt
from lumi.brokers._cloudevents import MODES
from lumi.model.errors import ConfigError

_OPTIONS = {
    "stream": str, "prefix": str, "storage": str, "replicas": int, "max_age": float,
    "duplicate_window": float, "lease": float, "concurrency": int, "mode": str, "name": str,
    "user": str, "password": str, "token": str, "creds": str, "nkey": str, "tls": bool,
    "tls_ca": str, "tls_cert": str, "tls_key": str,
}  # fmt: skip
CONNECT_OPTIONS = (
    "user",
    "password",
    "token",
    "creds",
    "nkey",
    "tls",
    "tls_ca",
    "tls_cert",
    "tls_key",
)


def parse_url(url: str) -> tuple[list[str], dict[str, Any]]:
    """``(servers, options)`` of a ``nats://`` URL."""
    hosts, pairs = opt.split_url(url, "nats")
    options: dict[str, Any] = {}
    for name, raw in pairs:
        kind = _OPTIONS.get(name)
        if kind is None:
            raise opt.unknown(name, "nats", list(_OPTIONS))
        value = opt.resolve(name, raw, "nats")
        if kind is int:
            options[name] = opt.parse_int(name, value, "nats")
        elif kind is float:
            options[name] = opt.parse_duration(name, value, "nats")
        elif kind is bool:
            options[name] = opt.parse_bool(name, value, "nats")
        else:
            options[name] = value
    if options.get("storage", "file") not in ("file", "memory"):
        raise ConfigError(
            f"events: nats option storage is file or memory, not {options['storage']!r}"
        )
    if options.get("mode", "structured") not in MODES:
        raise ConfigError(f"events: nats option mode is one of {MODES}, not {options['mode']!r}")
    return [f"nats://{h}" for h in hosts], options


def connect_options(options: dict[str, Any]) -> dict[str, Any]:
    """nats-py ``connect`` keywords for the credential and TLS options."""
    out: dict[str, Any] = {}
    for name, key in (("user", "user"), ("password", "password"), ("token", "token")):
        if name in options:
            out[key] = options[name]
    if "creds" in options:
        out["user_credentials"] = options["creds"]
    if "nkey" in options:
        out["nkeys_seed"] = options["nkey"]
    if options.get("tls") or any(k in options for k in ("tls_ca", "tls_cert", "tls_key")):
        context = ssl.create_default_context(cafile=options.get("tls_ca"))
        if "tls_cert" in options:
            context.load_cert_chain(options["tls_cert"], options.get("tls_key"))
        out["tls"] = context
    return out


def durable_name(group: str, topic: str) -> str:
    """A consumer name for (group, topic): readable, and unique even after the characters NATS
    does not allow in names were replaced."""
    readable = re.sub(r"[^A-Za-z0-9_-]", "_", f"{group}_{topic}")[:200]
    digest = hashlib.sha256(f"{group}\0{topic}".encode()).hexdigest()[:8]
    return f"{readable}_{digest}"
