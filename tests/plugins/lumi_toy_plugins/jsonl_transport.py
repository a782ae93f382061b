"""A toy RPC transport: ``rpc = "jsonl"`` — newline-delimited JSON frames over TCP.

One connection carries many calls at once; each frame names its call by ``id``::

    → {"id": 7, "service": "Echo", "method": "echo", "metadata": {...}, "body": "<JSON args>"}
    ← {"id": 7, "result": "<JSON result>"}   or   {"id": 7, "error": {"code": ..., ...}}
    → {"id": 8, "probe": true}               ← {"id": 8, "ready": true, "state": {...}}

With ``ServerSettings.tls`` the port speaks TLS (through ``lumi.transports.tls_server``, so a
refused certificate gets its TLS alert) and the caller is the verified certificate's identity;
``metadata.caller`` in a frame is never read.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import ssl
import time
from typing import Any, ClassVar

from lumi.model.context import Metadata, User
from lumi.model.errors import (
    DeadlineExceeded,
    InvalidArgument,
    Lost,
    LumiError,
    NotSent,
    StatusCode,
)
from lumi.model.interface import ServiceInterface
from lumi.pipeline.call import Call, Handler
from lumi.pipeline.edge import check_metadata
from lumi.transports.base import Channel, ChannelSettings, Server, ServerSettings, Transport
from lumi.transports.tls import handshake_failure, transport_identity
from lumi.transports.tls_server import tls_factory

_FIELDS = ("correlation_id", "traceparent", "deadline", "idempotency_key", "authorization")


class JsonlServer(Server):
    def __init__(self, handler: Handler, sock: socket.socket, settings: ServerSettings) -> None:
        self.handler = handler
        self.sock = sock
        self.settings = settings
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def endpoint(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"jsonl://{host}:{port}"

    async def start(self) -> None:
        limit = self.settings.max_body * 2 + 4096
        if self.settings.tls is None:
            self._server = await asyncio.start_server(self._serve, sock=self.sock, limit=limit)
        else:
            loop = asyncio.get_running_loop()

            def streams() -> asyncio.Protocol:
                reader = asyncio.StreamReader(limit=limit)
                return asyncio.StreamReaderProtocol(reader, self._serve)

            context = self.settings.tls.server_context()
            self._server = await loop.create_server(tls_factory(context, streams), sock=self.sock)
        self.settings.health.serving = True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while line := await reader.readline():
                task = asyncio.create_task(self._answer(line, writer))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except (ValueError, ConnectionError):  # a frame over the limit, or the peer went away
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _answer(self, line: bytes, writer: asyncio.StreamWriter) -> None:
        frame: dict[str, Any] = {}
        try:
            frame = json.loads(line)
            if frame.get("probe"):
                ready, state = await self.settings.health.ready()
                reply: dict[str, Any] = {"ready": ready, "state": state}
            else:
                body = frame["body"].encode()
                if len(body) > self.settings.max_body:
                    raise LumiError.for_code(StatusCode.RESOURCE_EXHAUSTED)(
                        f"request body is larger than the limit of {self.settings.max_body} bytes"
                    )
                meta = frame.get("metadata") or {}
                # the edge every server calls: Lumi's limits on metadata, shared by all
                metadata = check_metadata(Metadata(**{k: meta.get(k) for k in _FIELDS}))
                metadata.caller = transport_identity(writer.transport)
                if metadata.caller is not None and meta.get("user"):
                    metadata.user = User.from_header(meta["user"])
                call = Call(frame["service"], frame["method"], body, metadata)
                reply = {"result": (await self.handler(call)).decode()}
        except LumiError as exc:
            reply = {"error": exc.to_wire()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            reply = {"error": InvalidArgument(f"bad frame: {exc}").to_wire()}
        reply["id"] = frame.get("id") if isinstance(frame, dict) else None
        with contextlib.suppress(ConnectionError):
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()

    async def aclose(self) -> None:
        self.settings.health.draining = True
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.grace_period):
                    while self._tasks:
                        await asyncio.gather(*self._tasks, return_exceptions=True)
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()


class JsonlChannel(Channel):
    """One multiplexed connection to one endpoint, opened on first use and after a failure."""

    def __init__(self, endpoint: str, settings: ChannelSettings | None = None) -> None:
        self.endpoint = endpoint
        self.settings = settings or ChannelSettings()
        host, port = endpoint.removeprefix("jsonl://").rsplit(":", 1)
        self._address = (host, int(port))
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._connecting = asyncio.Lock()

    async def _connection(self) -> asyncio.StreamWriter:
        async with self._connecting:
            if self._writer is None or self._writer.is_closing():
                tls = self.settings.tls
                secure: dict[str, Any] = {}
                if tls is not None:
                    name = self.settings.server_name or self._address[0]
                    secure = {"ssl": tls.client_context(), "server_hostname": name}
                try:
                    reader, self._writer = await asyncio.open_connection(
                        *self._address, limit=64 * 1024 * 1024, **secure
                    )
                except ssl.SSLError as exc:
                    raise handshake_failure(exc, self.endpoint) from None
                except OSError as exc:
                    raise NotSent(f"{self.endpoint}: {exc.strerror or exc}") from None
                self._reader_task = asyncio.create_task(self._read(reader))
            return self._writer

    async def _read(self, reader: asyncio.StreamReader) -> None:
        failure: LumiError = Lost(f"{self.endpoint}: connection lost")
        try:
            while line := await reader.readline():
                frame = json.loads(line)
                waiter = self._waiting.pop(frame.get("id"), None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(frame)
        except ssl.SSLError as exc:  # TLS 1.3: the server refused our certificate
            failure = handshake_failure(exc, self.endpoint)
        except (OSError, ValueError):
            pass
        finally:
            for waiter in self._waiting.values():
                if not waiter.done():
                    # sent, then lost: the retry policy may resend only an idempotent call
                    waiter.set_exception(failure)
            self._waiting.clear()
            if self._writer is not None:
                self._writer.close()

    async def request(self, frame: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        writer = await self._connection()
        frame["id"] = ident = next(self._ids)
        waiter = self._waiting[ident] = asyncio.get_running_loop().create_future()
        try:
            writer.write(json.dumps(frame).encode() + b"\n")
            async with asyncio.timeout(timeout):
                return await waiter
        finally:
            self._waiting.pop(ident, None)

    async def call(self, call: Call) -> bytes:
        meta = call.metadata
        check_metadata(meta)  # what the callee's edge would refuse is not sent
        timeout = None if meta.deadline is None else meta.deadline - time.time()
        if timeout is not None and timeout <= 0:
            raise DeadlineExceeded(f"deadline passed before calling {call.service}.{call.method}")
        sent = {k: getattr(meta, k) for k in _FIELDS if getattr(meta, k) is not None}
        if meta.user is not None:
            sent["user"] = meta.user.to_header()
        frame = {
            "service": call.service,
            "method": call.method,
            "metadata": sent,
            "body": call.body.decode(),
        }
        try:
            reply = await self.request(frame, timeout)
        except TimeoutError:
            raise DeadlineExceeded(f"{call.service}.{call.method} did not answer in time") from None
        if "error" in reply:
            raise LumiError.from_wire(reply["error"])
        return str(reply["result"]).encode()

    async def aclose(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            with contextlib.suppress(BaseException):
                await self._reader_task


class JsonlTransport(Transport):
    name: ClassVar[str] = "jsonl"
    supports_tls: ClassVar[bool] = True

    def server(self, handler: Handler, sock: socket.socket, settings: ServerSettings) -> Server:
        return JsonlServer(handler, sock, settings)

    def channel(
        self,
        endpoint: str,
        interface: ServiceInterface | None = None,
        settings: ChannelSettings | None = None,
    ) -> Channel:
        return JsonlChannel(endpoint, settings)

    async def probe(
        self, endpoint: str, *, timeout: float = 2.0, settings: ChannelSettings | None = None
    ) -> None:
        channel = JsonlChannel(endpoint, settings)
        try:
            reply = await channel.request({"probe": True}, timeout)
        except (LumiError, TimeoutError, OSError) as exc:
            raise ConnectionError(f"{endpoint}: {exc}") from None
        finally:
            await channel.aclose()
        if not reply.get("ready"):
            raise ConnectionError(f"{endpoint} is not ready: {reply.get('state')}")
