"""RPC transports, chosen by the ``rpc`` config value (one name or a list, served at once).

Built in: ``http`` (the default); ``grpc`` and ``thrift`` as their modules land. Third-party
transports register a ``lumi.transports`` entry point naming a
:class:`~lumi.transports.base.Transport` subclass. The in-process ``local`` channel
(:mod:`lumi.transports.local`) is what ``lumi.App`` uses and needs no registration.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lumi.backends import TRANSPORTS

if TYPE_CHECKING:
    from lumi.transports.base import Transport

_instances: dict[str, Transport] = {}


def get(name: str) -> Transport:
    """This process's instance of the transport called ``name`` (ConfigError if unavailable)."""
    found = _instances.get(name)
    if found is None:
        found = _instances[name] = TRANSPORTS.load(name)()
    return found


__all__ = ["TRANSPORTS", "get"]
