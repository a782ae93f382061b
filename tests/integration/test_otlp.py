"""OTLP export: with an endpoint configured, spans reach an OTLP/HTTP receiver."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import lumi
from lumi.runtime_services.observability.tracing import setup_tracing
from lumi.runtimes.stack import RuntimeServices
from lumi.testing import wait_until
from tests.observekit import CHAIN, Gateway, Mailer


class Receiver(ThreadingHTTPServer):
    """A minimal OTLP/HTTP collector: keeps the span names of every export request."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.names: list[str] = []
        self.paths: list[str] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                self.server.names.extend(span.name for span in scope_spans.spans)
        self.server.paths.append(self.path)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """An OTLP/HTTP receiver on a free loopback port, stopped after the test."""
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


async def test_spans_are_exported_over_otlp(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT set: every span of a request arrives at the collector."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    tracing = setup_tracing(service="shop", store=None)
    try:
        async with lumi.App(CHAIN, runtime=RuntimeServices(tracing=tracing)) as app:
            await app.client(Gateway).buy(sku="apple", password="x")
            await wait_until(lambda: bool(app.service(Mailer).sent), message="mail sent")
    finally:
        await asyncio.to_thread(tracing.shutdown)  # flushes the last batch
    assert receiver.paths and set(receiver.paths) == {"/v1/traces"}
    assert {"Gateway/buy", "Orders/place", "Inventory/reserve", "publish Orders.placed"} <= set(
        receiver.names
    )
