"""Transports by name: port reservation per wire, endpoint choice, balancing, locks, config."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

import lumi
from lumi.config import load_config
from lumi.model.context import Metadata
from lumi.model.errors import ConfigError
from lumi.pipeline import Call
from lumi.pipeline.dispatch import Dispatcher
from lumi.pipeline.outcome import Lost, NotSent
from lumi.transports import wiring
from lumi.transports.base import Channel
from tests.conformance.rpc_services import Echo


async def test_grpc_serves_on_the_port_the_supervisor_reserved() -> None:
    """A port held with SO_REUSEPORT (not listening) is bound again by the gRPC server, and
    every connection reaches the server."""
    sock = wiring.bind("grpc", "127.0.0.1", 0)
    try:
        dispatcher = Dispatcher()
        dispatcher.add(Echo())
        iface = lumi.interface(Echo)
        server = wiring.server(
            "grpc", dispatcher.handle, sock=sock, interfaces={"Echo": iface},
            options=wiring.WireOptions(),
        )  # fmt: skip
        await server.start()
        try:
            url = wiring.endpoint("grpc", sock)
            assert server.address == url
            channel = wiring.channel([url], interface=iface, options=wiring.WireOptions())
            for n in range(20):
                assert (
                    await channel.call(Call("Echo", "number", b'{"n": %d}' % n, Metadata()))
                    == b"%d" % n
                )
            await channel.aclose()
            await wiring.probe(url)
        finally:
            await server.aclose()
    finally:
        sock.close()


def test_an_http_or_thrift_reservation_listens() -> None:
    """HTTP and Thrift reservations are listening sockets a replica adopts."""
    for transport in ("http", "thrift"):
        sock = wiring.bind(transport, "127.0.0.1", 0)
        try:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
            assert wiring.endpoint(transport, sock).startswith(f"{transport}://127.0.0.1:")
        finally:
            sock.close()


def test_pick_defaults_to_the_first_transport_and_refuses_one_not_served() -> None:
    """Without a choice the callee's first transport is used; a transport it does not serve is
    a ConfigError naming what it serves."""
    endpoints = ["grpc://h:1", "grpc://h:2", "http://h:3", "http://h:4"]
    assert wiring.pick("Svc", endpoints, None) == ["grpc://h:1", "grpc://h:2"]
    assert wiring.pick("Svc", endpoints, "http") == ["http://h:3", "http://h:4"]
    with pytest.raises(
        ConfigError, match=r"Svc is not served over 'thrift' \(it serves: grpc, http\)"
    ):
        wiring.pick("Svc", endpoints, "thrift")


class _Fake(Channel):
    def __init__(self, error: Exception | None, answer: bytes = b"1") -> None:
        self.error = error
        self.answer = answer
        self.calls = 0

    async def call(self, call: Call) -> bytes:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.answer


async def test_balanced_skips_replicas_that_were_not_reached_only() -> None:
    """NotSent moves on to the next replica; Lost is raised at once (it may have run)."""
    down, up = _Fake(NotSent("cannot reach a")), _Fake(None, b"ok")
    balanced = wiring.Balanced([down, up])
    call = Call("S", "m", b"{}", Metadata())
    assert [await balanced.call(call) for _ in range(4)] == [b"ok"] * 4
    lost = wiring.Balanced([_Fake(Lost("reset")), up])
    with pytest.raises(Lost):
        await lost.call(call)
    with pytest.raises(NotSent, match="cannot reach S"):
        await wiring.Balanced([down, _Fake(NotSent("cannot reach b"))]).call(call)


def test_options_read_the_lock_lumi_gen_wrote(tmp_path: Path) -> None:
    """The proto and thrift lock sections are found where `lumi gen` writes them."""
    (tmp_path / "gen" / "proto").mkdir(parents=True)
    (tmp_path / "gen" / "proto" / "lumi.lock.json").write_text(json.dumps({"proto": {"a": 1}}))
    (tmp_path / "lumi.lock.json").write_text(json.dumps({"thrift": {"b": 2}}))
    options = wiring.options_for(tmp_path, "shop", 1024, 1.0)
    assert options.locks == {"proto": {"a": 1}, "thrift": {"b": 2}}
    assert options.package == "shop"


def test_config_checks_the_capability_transport(tmp_path: Path) -> None:
    """A misspelt capability transport is one ConfigError naming the key and the fix."""
    (tmp_path / "lumi.toml").write_text(
        '[app]\nname = "x"\nservices = ["m:A"]\n[services.A.capabilities.B]\ntransport = "grcp"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    message = str(caught.value)
    assert "services.A.capabilities.B.transport" in message and "did you mean 'grpc'?" in message
