"""gRPC and Thrift as transports: gRPC on a port reserved with SO_REUSEPORT, Thrift on an
adopted listening socket, and the package and lock `lumi gen` wrote found for an app."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import lumi
from lumi import transports
from lumi.model.context import Metadata
from lumi.pipeline import Call
from lumi.pipeline.dispatch import Dispatcher
from lumi.transports import idl
from lumi.transports.base import ServerSettings
from tests.conformance.rpc_services import Echo

ECHO = lumi.interface(Echo)


def dispatcher() -> Dispatcher:
    d = Dispatcher()
    d.add(Echo())
    return d


async def test_grpc_serves_on_the_port_bind_reserved() -> None:
    """The reservation is bound but not listening; the gRPC server binds the same port and every
    connection reaches it; probe() sees it serving."""
    grpc = transports.get("grpc")
    sock = grpc.bind("127.0.0.1", 0)
    try:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 0
        server = grpc.server(dispatcher().handle, sock, ServerSettings(interfaces={"Echo": ECHO}))
        await server.start()
        try:
            assert server.endpoint == grpc.endpoint_of(sock)
            async with grpc.channel(server.endpoint, ECHO) as channel:
                for n in range(20):
                    body = b'{"n": %d}' % n
                    assert await channel.call(Call("Echo", "number", body, Metadata())) == b"%d" % n
            await grpc.probe(server.endpoint)
        finally:
            await server.aclose()
    finally:
        sock.close()


async def test_thrift_adopts_a_listening_socket() -> None:
    """Thrift's reservation listens (connections wait in the backlog across a restart) and the
    server serves on that very socket."""
    thrift = transports.get("thrift")
    sock = thrift.bind("127.0.0.1", 0)
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
    server = thrift.server(dispatcher().handle, sock, ServerSettings(interfaces={"Echo": ECHO}))
    async with server:
        assert server.endpoint == thrift.endpoint_of(sock)
        async with thrift.channel(server.endpoint, ECHO) as channel:
            assert await channel.call(Call("Echo", "number", b'{"n": 5}', Metadata())) == b"5"


def test_idl_options_find_the_lock_lumi_gen_wrote(tmp_path: Path) -> None:
    """The proto and thrift lock sections are read from where `lumi gen` writes them, and the
    package is the app's name as `lumi gen` uses it."""
    (tmp_path / "gen" / "proto").mkdir(parents=True)
    (tmp_path / "gen" / "proto" / "lumi.lock.json").write_text(json.dumps({"proto": {"a": 1}}))
    (tmp_path / "lumi.lock.json").write_text(json.dumps({"thrift": {"b": 2}}))
    options = idl.for_app(tmp_path, "my-shop")
    assert options.locks == {"proto": {"a": 1}, "thrift": {"b": 2}}
    assert options.package == "my_shop"
