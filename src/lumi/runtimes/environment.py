"""What a replica reads from its environment when no supervisor hands it a spec.

``lumi serve SERVICE`` (in a container, a Kubernetes pod, a Lambda function or a terminal) learns
where its capabilities are and how to listen from these variables; the Kubernetes target
writes the same names into its ConfigMaps, so this module is the one list of them::

    LUMI_ENV                 the named environment of lumi.toml to apply
    LUMI_HOST                the address to listen on (default: defaults.host, 127.0.0.1)
    LUMI_PORT_<TRANSPORT>    the port of one transport (LUMI_PORT_HTTP=8080); LUMI_PORT is the
                             first transport's; default services.X.port, else a free port
    LUMI_ENDPOINTS           JSON: {"Catalog": ["http://catalog:8080"], ...}
    LUMI_ENDPOINTS_<SERVICE> one service's endpoints, space-separated (LUMI_ENDPOINTS_CATALOG)
    LUMI_EVENTS              the broker URL, overriding every service's ``events``
    LUMI_NODE                the node this replica runs on (per-node placement)
    LUMI_REPLICA             this replica's index (logs, metrics)
    LUMI_ENDPOINTS_FILE      where to write this replica's own endpoints once it serves (read
                             by the container HEALTHCHECK)
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping

import pydantic

from lumi.config import AppConfig, Defaults, ServiceConfig
from lumi.model.errors import ConfigError

ENV = "LUMI_ENV"
HOST = "LUMI_HOST"
PORT = "LUMI_PORT"
ENDPOINTS = "LUMI_ENDPOINTS"
EVENTS = "LUMI_EVENTS"
NODE = "LUMI_NODE"
REPLICA = "LUMI_REPLICA"
ENDPOINTS_FILE = "LUMI_ENDPOINTS_FILE"

# Ports a service listens on inside a container or pod, where every pod has its own address.
CONTAINER_PORTS = {"http": 8080, "grpc": 50051, "thrift": 9090}


def port_variable(transport: str) -> str:
    """``"http"`` → ``"LUMI_PORT_HTTP"``."""
    return f"{PORT}_{transport.upper()}"


def endpoints_variable(service: str) -> str:
    """``"Catalog"`` → ``"LUMI_ENDPOINTS_CATALOG"``."""
    return f"{ENDPOINTS}_{service.upper()}"


def container_port(transport: str, position: int) -> int:
    """The port ``transport`` listens on in a container (the n-th transport of a service)."""
    return CONTAINER_PORTS.get(transport, 9100 + position)


def endpoints_from(environ: Mapping[str, str], services: Iterable[str]) -> dict[str, list[str]]:
    """Capability endpoints from ``LUMI_ENDPOINTS`` and ``LUMI_ENDPOINTS_<SERVICE>``."""
    found: dict[str, list[str]] = {}
    raw = environ.get(ENDPOINTS)
    if raw:
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ConfigError(f"{ENDPOINTS} is not JSON: {exc}") from None
        if not isinstance(data, dict) or not all(
            isinstance(v, list) and all(isinstance(u, str) for u in v) for v in data.values()
        ):
            raise ConfigError(
                f'{ENDPOINTS} must be a JSON object like {{"Catalog": ["http://catalog:8080"]}}'
            )
        found.update({str(k): list(v) for k, v in data.items()})
    for service in services:
        own = environ.get(endpoints_variable(service))
        if own:
            found[service] = own.split()
    return found


def ports_from(
    environ: Mapping[str, str], transports: list[str], configured: int | None
) -> dict[str, int]:
    """The port of each transport: ``LUMI_PORT_<T>``, ``LUMI_PORT`` (first), the config, 0."""
    ports: dict[str, int] = {}
    for position, transport in enumerate(transports):
        name = port_variable(transport)
        text = environ.get(name) or (environ.get(PORT) if position == 0 else None)
        if text is None:
            ports[transport] = configured if position == 0 and configured else 0
            continue
        if not text.isdigit() or not 0 <= int(text) <= 65535:
            source = name if name in environ else PORT
            raise ConfigError(f"{source} must be a port number, not {text!r}")
        ports[transport] = int(text)
    return ports


def with_events(config: AppConfig, url: str) -> AppConfig:
    """``config`` with every service publishing and consuming through the broker at ``url``."""
    try:
        defaults = Defaults.model_validate({**config.defaults.model_dump(), "events": url})
    except pydantic.ValidationError as exc:
        message = str(exc.errors(include_url=False)[0]["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{EVENTS}: {message}") from None
    services: dict[str, ServiceConfig] = {
        name: own.model_copy(update={"events": None}) for name, own in config.services.items()
    }
    return dataclasses.replace(config, defaults=defaults, services=services)
