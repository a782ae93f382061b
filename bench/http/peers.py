"""The same echo endpoint as FastAPI and as a bare ASGI callable, for bench/http_bench.py."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel


class EchoRequest(BaseModel):
    text: str
    n: int


class Echoed(BaseModel):
    text: str
    n: int


fastapi_app = FastAPI()


@fastapi_app.post("/Bench/echo")
async def echo(request: EchoRequest) -> Echoed:
    return Echoed(text=request.text, n=request.n)


_HEADERS = [(b"content-type", b"application/json")]


async def bare_app(scope: Any, receive: Any, send: Any) -> None:
    """The practical ceiling: read the body, validate with pydantic, answer JSON."""
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
    out = Echoed(text=request.text, n=request.n).model_dump_json().encode()
    headers = [*_HEADERS, (b"content-length", str(len(out)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": out})
