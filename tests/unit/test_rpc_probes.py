"""Readiness probes in each wire's idiom: grpc.health.v1 for gRPC, Lumi's health function for
Thrift; both follow the server's readiness check and report draining."""

from __future__ import annotations

from typing import Any

import pytest

import lumi
from lumi.pipeline.dispatch import Dispatcher
from lumi.transports import grpc as grpc_transport
from lumi.transports import thrift as thrift_transport
from tests.conformance.rpc_services import Echo

ECHO = {"Echo": lumi.interface(Echo)}


class Readiness:
    def __init__(self) -> None:
        self.ok = False

    async def __call__(self) -> tuple[bool, dict[str, Any]]:
        return self.ok, {"Echo": {"ok": self.ok}}


@pytest.mark.parametrize("kind", ["grpc", "thrift"])
async def test_probe_follows_readiness_and_draining(kind: str) -> None:
    """Not ready → the probe raises; ready → it returns; draining → it raises again."""
    dispatcher = Dispatcher()
    dispatcher.add(Echo())
    ready = Readiness()
    module: Any = grpc_transport if kind == "grpc" else thrift_transport
    cls = module.GrpcServer if kind == "grpc" else module.ThriftServer
    server = cls(dispatcher.handle, interfaces=ECHO, ready=ready, grace_period=0.1)
    await server.start()
    try:
        with pytest.raises(ConnectionError):
            await module.probe(server.address, timeout=2)
        ready.ok = True
        await module.probe(server.address, timeout=2)
    finally:
        await server.aclose()
    with pytest.raises(ConnectionError):
        await module.probe(server.address, timeout=2)
