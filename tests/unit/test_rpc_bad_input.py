"""Bad bytes on the gRPC and Thrift wires get a clear answer (or a closed connection) and the
server keeps serving."""

from __future__ import annotations

import asyncio

import grpc
import grpc.aio
import pytest

import lumi
from lumi.model.context import Metadata
from lumi.pipeline import Call
from lumi.pipeline.dispatch import Dispatcher
from lumi.transports.base import ServerSettings
from lumi.transports.grpc import GrpcChannel, GrpcServer
from lumi.transports.idl import IdlOptions
from lumi.transports.thrift import ThriftChannel, ThriftServer
from tests.conformance.rpc_services import Echo

ECHO = lumi.interface(Echo)
SERVED = {"Echo": ECHO}
LUMI = IdlOptions()  # package "lumi", explicit: the process-wide options may be an app's


def dispatcher() -> Dispatcher:
    d = Dispatcher()
    d.add(Echo())
    return d


async def test_grpc_garbage_message_is_invalid_argument() -> None:
    """A request that is not a valid protobuf message is INVALID_ARGUMENT; the next call works."""
    server = GrpcServer(dispatcher().handle, ServerSettings(interfaces=SERVED), options=LUMI)
    async with server:
        target = server.endpoint.removeprefix("grpc://")
        async with grpc.aio.insecure_channel(target) as channel:
            raw = channel.unary_unary("/lumi.echo.Echo/Number")
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await raw(b"\xff\xff\xff\xff")
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "NumberRequest" in (caught.value.details() or "")
            unknown = channel.unary_unary("/lumi.echo.Echo/Nope")
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await unknown(b"")
            assert missing.value.code() == grpc.StatusCode.UNIMPLEMENTED
        client = GrpcChannel(server.endpoint, interface=ECHO, options=LUMI)
        assert await client.call(Call("Echo", "number", b'{"n": 3}', Metadata())) == b"3"
        await client.aclose()


@pytest.mark.parametrize(
    "garbage",
    [b"\x00\x00\x00\x05hello", b"\x80\x01\x00\x01\xff\xff\xff\xff", b"GET / HTTP/1.1\r\n\r\n"],
    ids=["frame-of-junk", "bad-binary-header", "http"],
)
async def test_thrift_garbage_closes_only_that_connection(garbage: bytes) -> None:
    """Bytes that are not a Thrift message close that connection; the server keeps serving."""
    async with ThriftServer(dispatcher().handle, ServerSettings(interfaces=SERVED)) as server:
        host, port = server.endpoint.removeprefix("thrift://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(garbage)
        assert await asyncio.wait_for(reader.read(), timeout=5) == b""  # closed by the server
        writer.close()
        await writer.wait_closed()
        client = ThriftChannel(server.endpoint, interface=ECHO)
        assert await client.call(Call("Echo", "number", b'{"n": 4}', Metadata())) == b"4"
        await client.aclose()


async def test_thrift_half_sent_message_is_dropped_when_idle() -> None:
    """A connection that stops in the middle of a message is closed after the idle timeout."""
    server = ThriftServer(dispatcher().handle, ServerSettings(interfaces=SERVED), idle_timeout=0.3)
    async with server:
        host, port = server.endpoint.removeprefix("thrift://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"\x00\x00\x00\x40\x80\x01")  # a 64-byte frame, 2 bytes of it sent
        assert await asyncio.wait_for(reader.read(), timeout=5) == b""
        writer.close()
        await writer.wait_closed()


async def test_thrift_unknown_function_is_an_application_exception() -> None:
    """A function the IDL does not declare gets Thrift's UNKNOWN_METHOD exception."""
    from thriftpy2.thrift import TApplicationException, TMessageType

    from lumi.transports.thrift import _Empty, _reading, encode_message

    async with ThriftServer(dispatcher().handle, ServerSettings(interfaces=SERVED)) as server:
        host, port = server.endpoint.removeprefix("thrift://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(encode_message("binary", True, "nope", TMessageType.CALL, 7, _Empty()))
        size = int.from_bytes(await reader.readexactly(4), "big")
        proto, _ = _reading("binary", await reader.readexactly(size))
        name, kind, seqid = proto.read_message_begin()
        error = TApplicationException()
        proto.read_struct(error)
        writer.close()
        await writer.wait_closed()
    assert (name, kind, seqid) == ("nope", TMessageType.EXCEPTION, 7)
    assert error.type == TApplicationException.UNKNOWN_METHOD
