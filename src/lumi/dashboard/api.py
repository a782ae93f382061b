"""The dashboard's JSON and server-sent-event routes (all under ``/api``, all token-checked).

=========================================  ==============================================
``GET  /api/app``                          services, edges, replica state, interfaces
``GET  /api/live/state``                   SSE: ``state`` whenever a replica changes
``POST /api/call``                         call a method: ``{service, method, arguments}``
``GET  /api/traces?q=&limit=``             recent traces (q: trace or correlation id prefix)
``GET  /api/traces/{ident}``               one trace's spans, in tree order
``GET  /api/live/traces``                  SSE: ``traces`` (the recent list) as spans arrive
``GET  /api/events``                       topics with rates and dead-letter counts
``GET  /api/live/events?topic=``           SSE: ``event`` for each event on the topic
``GET  /api/deadletters``                  dead letters, with reason and attempts
``POST /api/deadletters/replay``           ``{topic, group, ids}``: send them back
``GET  /api/logs?service=&level=&correlation=&q=``   merged recent log records
``GET  /api/live/logs?…``                  SSE: ``log`` for each new matching record
``GET  /api/metrics``                      per-method rate, errors, latency percentiles
``GET  /api/live/metrics``                 SSE: ``metrics`` after every sample
=========================================  ==============================================
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from lumi.dashboard import hub as sse
from lumi.dashboard import logview, traces
from lumi.model.errors import LumiError

if TYPE_CHECKING:
    from lumi.dashboard.server import Dashboard

MAX_BODY = 1 << 20


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _body(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
    try:
        data = json.loads(await request.read())
    except ValueError as exc:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"the body is not JSON: {exc}"}),
            content_type="application/json",
        ) from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "the body must be a JSON object"}),
            content_type="application/json",
        )
    return data


def _limit(request: web.Request, default: int, ceiling: int) -> int:
    try:
        return max(1, min(ceiling, int(request.query.get("limit", default))))
    except ValueError:
        return default


def routes(board: Dashboard) -> list[web.RouteDef]:
    """Every ``/api`` route of ``board``."""
    state, root = board.state, board.config.root
    store = root / ".lumi" / "traces.db"

    async def app_info(_request: web.Request) -> web.Response:
        return web.json_response({**state.snapshot(), "interfaces": state.interface_dicts()})

    async def live_state(request: web.Request) -> web.StreamResponse:
        return await sse.stream(request, board.hub, initial=[("state", state.snapshot())],
                                keep=lambda m: m[0] == "state")  # fmt: skip

    async def call(request: web.Request) -> web.Response:
        body = await _body(request)
        service, method = str(body.get("service", "")), str(body.get("method", ""))
        arguments = body.get("arguments", {})
        iface = state.interfaces.get(service)
        if iface is None:
            return _error(404, f"no service {service!r} (services: {', '.join(state.order())})")
        if not isinstance(arguments, dict):
            return _error(400, "arguments must be a JSON object")
        try:
            outcome = await board.caller.call(iface, method, arguments, state.endpoints(service))
        except LumiError as exc:
            outcome = {"ok": False, "error": exc.to_wire(), "correlation_id": None,
                       "trace_id": None, "ms": 0}  # fmt: skip
        return web.json_response(outcome)

    async def trace_list(request: web.Request) -> web.Response:
        query = request.query.get("q", "").strip()[:64]
        found = await asyncio.to_thread(
            traces.recent, store, limit=_limit(request, 50, 500), query=query
        )
        return web.json_response({"traces": found})

    async def live_traces(request: web.Request) -> web.StreamResponse:
        return await sse.stream(request, board.hub, keep=lambda m: m[0] == "traces")

    async def trace_detail(request: web.Request) -> web.Response:
        ident = request.match_info["ident"][:64]
        found = await asyncio.to_thread(traces.detail, store, ident)
        if found is None:
            return _error(404, f"no trace or correlation id {ident!r} in the span store (yet)")
        return web.json_response(found)

    async def events(_request: web.Request) -> web.Response:
        letters = await board.events.dead_letters()
        topics = []
        for topic, info in sorted(state.topics().items()):
            dead = [d for d in letters if d["topic"] == topic]
            topics.append({**info, **board.events.rates(topic), "dead_letters": len(dead)})
        return web.json_response({"topics": topics, "unreachable": board.events.unreachable})

    async def live_events(request: web.Request) -> web.StreamResponse:
        topic = request.query.get("topic", "")
        initial = [("event", {"topic": topic, "event": e})
                   for e in board.events.recent.get(topic, [])]  # fmt: skip
        return await sse.stream(
            request, board.hub, initial=initial,
            keep=lambda m: m[0] == "event" and m[1]["topic"] == topic,
        )  # fmt: skip

    async def dead_letters(_request: web.Request) -> web.Response:
        return web.json_response({"dead_letters": await board.events.dead_letters()})

    async def replay(request: web.Request) -> web.Response:
        body = await _body(request)
        topic = str(body.get("topic", ""))
        group = body.get("group")
        ids = body.get("ids")
        if topic not in board.events.topic_broker:
            return _error(404, f"no topic {topic!r} in this app")
        if ids is not None and not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
            return _error(400, "ids must be a list of event ids")
        count = await board.events.replay(topic, None if group is None else str(group), ids)
        return web.json_response({"replayed": count})

    def log_filter(request: web.Request) -> Any:
        query = request.query
        services = [s for s in query.getall("service", []) if s]
        return logview.matcher(
            services, query.get("level"), query.get("correlation", "").strip() or None,
            query.get("q"),
        )  # fmt: skip

    async def logs(request: web.Request) -> web.Response:
        keep = log_filter(request)
        found = await asyncio.to_thread(
            logview.history, root, keep, limit=_limit(request, 300, 2000)
        )
        return web.json_response({"logs": found})

    async def live_logs(request: web.Request) -> web.StreamResponse:
        keep = log_filter(request)
        return await sse.stream(request, board.hub, keep=lambda m: m[0] == "log" and keep(m[1]))

    async def metrics(_request: web.Request) -> web.Response:
        return web.json_response({"methods": board.metrics.table()})

    async def live_metrics(request: web.Request) -> web.StreamResponse:
        initial = [("metrics", board.metrics.table())]
        return await sse.stream(request, board.hub, initial=initial,
                                keep=lambda m: m[0] == "metrics")  # fmt: skip

    return [
        web.get("/api/app", app_info),
        web.get("/api/live/state", live_state),
        web.post("/api/call", call),
        web.get("/api/traces", trace_list),
        web.get("/api/traces/{ident}", trace_detail),
        web.get("/api/live/traces", live_traces),
        web.get("/api/events", events),
        web.get("/api/live/events", live_events),
        web.get("/api/deadletters", dead_letters),
        web.post("/api/deadletters/replay", replay),
        web.get("/api/logs", logs),
        web.get("/api/live/logs", live_logs),
        web.get("/api/metrics", metrics),
        web.get("/api/live/metrics", live_metrics),
    ]
