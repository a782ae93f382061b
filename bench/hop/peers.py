"""The peer of bench/hop_bench.py: a bare ASGI front calling a bare ASGI back (the echo of
bench/http/peers.py) through one pooled aiohttp session, as a hand-written service would."""

from __future__ import annotations

import os
from typing import Any

import aiohttp
from pydantic import BaseModel


class EchoRequest(BaseModel):
    text: str
    n: int


class Echoed(BaseModel):
    text: str
    n: int


_BACK = os.environ.get("HOP_BACK_URL", "http://127.0.0.1:1") + "/Bench/echo"
_HEADERS = [(b"content-type", b"application/json")]
_OUT_HEADERS = {"content-type": "application/json"}
_session: aiohttp.ClientSession | None = None


async def front_app(scope: Any, receive: Any, send: Any) -> None:
    """Validate the arguments, call the back over a pooled session, validate its answer."""
    global _session
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    try:
        request = EchoRequest.model_validate_json(body)
    except ValueError:
        await send({"type": "http.response.start", "status": 400, "headers": _HEADERS})
        await send({"type": "http.response.body", "body": b'{"error":"bad request"}'})
        return
    if _session is None:
        _session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
    payload = request.model_dump_json().encode()
    async with _session.post(_BACK, data=payload, headers=_OUT_HEADERS) as response:
        answer = Echoed.model_validate_json(await response.read())
    out = answer.model_dump_json().encode()
    headers = [*_HEADERS, (b"content-length", str(len(out)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": out})
