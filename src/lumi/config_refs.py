"""Names in ``lumi.toml`` that must exist in the app's code, checked once its services import.

The pydantic models of :mod:`lumi.config` check a file's shape; some keys are names of things
defined in Python — ``[services.Orders]`` names a service, ``[services.Orders.capabilities.
Inventory]`` one of Orders' capabilities, whose ``transport`` must be one Inventory serves.
Those are checked here against the imported classes, in the base file and in every environment,
so a misspelt name is one :class:`ConfigError` with a did-you-mean instead of a setting that is
silently ignored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from lumi.model.errors import ConfigError
from lumi.model.reflect import reflect
from lumi.model.service import Service
from lumi.model.suggest import close_matches


class CapabilitySettings(Protocol):
    transport: str | None


class ServiceSettings(Protocol):
    rpc: list[str] | None

    @property
    def capabilities(self) -> Mapping[str, CapabilitySettings]: ...


@dataclasses.dataclass(frozen=True)
class Variant:
    """The services tables of the base file (``prefix=""``) or of one environment
    (``prefix="env.prod."``), with the default RPC transports there."""

    prefix: str
    rpc: Sequence[str]
    services: Mapping[str, ServiceSettings]


def check_references(file: Path, variants: Iterable[Variant], classes: list[type[Service]]) -> None:
    """Raise ConfigError for the first key naming a service, capability or transport that the
    app's ``classes`` do not have."""
    names = [cls.name for cls in classes]
    capabilities = {
        cls.name: sorted({dep.name for dep in reflect(cls).capabilities.values()})
        for cls in classes
    }
    for variant in variants:
        for service, settings in variant.services.items():
            key = f"{variant.prefix}services.{service}"
            if service not in capabilities:
                raise _error(
                    file,
                    key,
                    f"no service named {service!r} in app.services{_did_you_mean(service, names)} "
                    f"(services: {', '.join(names)})",
                )
            for capability, chosen in settings.capabilities.items():
                where = f"{key}.capabilities.{capability}"
                _check_capability(file, where, variant, service, capability, chosen, capabilities)


def _check_capability(
    file: Path,
    key: str,
    variant: Variant,
    service: str,
    capability: str,
    chosen: CapabilitySettings,
    capabilities: Mapping[str, list[str]],
) -> None:
    own = capabilities[service]
    if capability not in own:
        listed = (
            f"its capabilities: {', '.join(own)}"
            if own
            else "it has none; a capability is an annotation naming another service, "
            "e.g. inventory: Inventory"
        )
        raise _error(
            file,
            key,
            f"{service} has no capability {capability!r}{_did_you_mean(capability, own)} "
            f"({listed})",
        )
    if chosen.transport is None:
        return
    callee = variant.services.get(capability)
    served = list((callee.rpc if callee is not None else None) or variant.rpc)
    if chosen.transport not in served:
        raise _error(
            file,
            f"{key}.transport",
            f"{capability} does not serve {chosen.transport!r}"
            f"{_did_you_mean(chosen.transport, served)} (it serves: {', '.join(served)}; "
            f"add it to services.{capability}.rpc, or pick one of those)",
        )


def _did_you_mean(word: str, choices: list[str]) -> str:
    match = close_matches(word, choices, n=1)
    return f"; did you mean {match[0]!r}?" if match else ""


def _error(file: Path, key: str, message: str) -> ConfigError:
    return ConfigError(f"{file}: {key}: {message}")
