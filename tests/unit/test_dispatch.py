"""The dispatcher: validation, invocation, error mapping, deadlines and the middleware pipeline."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import threading
import time
import traceback

import pytest

import lumi
from lumi.model.context import Metadata
from lumi.pipeline import Call, Handler
from lumi.pipeline.dispatch import Dispatcher


class Calc(lumi.Service):
    @lumi.api
    async def add(self, a: int, b: int) -> int:
        return a + b

    @lumi.api
    def thread_name(self) -> str:
        return threading.current_thread().name

    @lumi.api
    async def boom(self) -> int:
        raise ZeroDivisionError("secret internals")

    @lumi.api
    async def missing(self, key: str) -> str:
        raise lumi.NotFound(f"no {key}", {"key": key})

    @lumi.api
    async def liar(self) -> int:
        return "not an int"  # type: ignore[return-value]

    @lumi.api(timeout=0.05)
    async def slow(self) -> None:
        await asyncio.sleep(5)

    @lumi.api
    async def where(self) -> dict[str, str | None]:
        ctx = lumi.context()
        assert ctx is not None
        return {"service": ctx.service, "method": ctx.method, "cid": ctx.correlation_id}

    @lumi.api
    def json(self, json: str) -> str:
        return json.upper()


def call(method: str, body: object = None, **meta: object) -> Call:
    raw = b"" if body is None else json.dumps(body).encode()
    return Call("Calc", method, raw, Metadata(**meta))  # type: ignore[arg-type]


@pytest.fixture
def dispatcher() -> Dispatcher:
    d = Dispatcher()
    d.add(Calc())
    return d


async def test_valid_call_returns_json(dispatcher: Dispatcher) -> None:
    """Arguments are validated and the result comes back as JSON bytes."""
    assert await dispatcher.handle(call("add", {"a": 2, "b": 3})) == b"5"
    assert await dispatcher.handle(call("json", {"json": "x"})) == b'"X"'


async def test_sync_methods_run_in_a_thread(dispatcher: Dispatcher) -> None:
    """A plain ``def`` method runs off the event loop thread."""
    name = json.loads(await dispatcher.handle(call("thread_name")))
    assert name != threading.current_thread().name


async def test_unknown_method_lists_the_methods(dispatcher: Dispatcher) -> None:
    """NOT_FOUND names the method, suggests the closest and lists them all."""
    with pytest.raises(lumi.NotFound) as info:
        await dispatcher.handle(call("ad", {}))
    assert "Calc has no method 'ad' (did you mean 'add'?)" in info.value.message
    assert "add, boom" in info.value.message
    assert "add" in info.value.details["methods"]


async def test_unknown_service_is_not_found(dispatcher: Dispatcher) -> None:
    """A call to a service not hosted here is NOT_FOUND listing the hosted services."""
    with pytest.raises(lumi.NotFound, match="no service 'Cal' here"):
        await dispatcher.handle(Call("Cal", "add", b"{}", Metadata()))


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"a": "x", "b": 1}, "a: Input should be a valid integer"),
        ({"a": 1}, "b: Field required"),
        ({"a": 1, "b": 2, "c": 3}, "Extra inputs are not permitted: 'c'"),
        ([1, 2], "Input should be an object"),
    ],
)
async def test_bad_arguments_are_invalid_argument_with_details(
    dispatcher: Dispatcher, body: object, fragment: str
) -> None:
    """Validation failures are INVALID_ARGUMENT with pydantic's details."""
    with pytest.raises(lumi.InvalidArgument) as info:
        await dispatcher.handle(call("add", body))
    assert fragment in info.value.message
    assert isinstance(info.value.details, list) and info.value.details[0]["type"]


async def test_malformed_json_is_invalid_argument(dispatcher: Dispatcher) -> None:
    """Bytes that are not JSON are INVALID_ARGUMENT, not a crash."""
    with pytest.raises(lumi.InvalidArgument, match="Invalid JSON"):
        await dispatcher.handle(Call("Calc", "add", b"{not json", Metadata()))


async def test_user_exception_is_internal_without_stack_on_the_wire(
    dispatcher: Dispatcher, caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected exception becomes INTERNAL with a generic message and an error id; the
    exception's text and stack go to the log, under that id, only."""
    with (
        caplog.at_level(logging.ERROR, logger="lumi.dispatch"),
        pytest.raises(lumi.Internal) as info,
    ):
        await dispatcher.handle(call("boom"))
    wire = info.value.to_wire()
    error_id = wire["details"]["error_id"]
    assert wire == {
        "code": "INTERNAL",
        "message": f"internal error (error id {error_id})",
        "details": {"error_id": error_id},
    }
    text = json.dumps(wire)
    # No part of the stack is on the wire: no traceback header, frame, file or source line...
    for fragment in ("Traceback", 'File "', __file__, "test_dispatch", "raise ZeroDivisionError"):
        assert fragment not in text, fragment
    assert "secret" not in text
    # ...while the log has all of it, under the error id.
    [record] = [r for r in caplog.records if r.exc_info and r.exc_info[0] is ZeroDivisionError]
    assert error_id in record.getMessage() and record.__dict__["error_id"] == error_id
    assert record.exc_info is not None
    frames = traceback.extract_tb(record.exc_info[2])
    assert frames[-1].filename == __file__


async def test_typed_errors_pass_through(dispatcher: Dispatcher) -> None:
    """A lumi error raised by the handler reaches the caller with its code and details."""
    with pytest.raises(lumi.NotFound) as info:
        await dispatcher.handle(call("missing", {"key": "k"}))
    assert info.value.to_wire() == {"code": "NOT_FOUND", "message": "no k", "details": {"key": "k"}}


async def test_wrong_return_type_is_internal(dispatcher: Dispatcher) -> None:
    """A result that does not match the declared type is INTERNAL, not silently sent."""
    with pytest.raises(lumi.Internal, match="does not match its declared return type"):
        await dispatcher.handle(call("liar"))


async def test_method_timeout_is_deadline_exceeded(dispatcher: Dispatcher) -> None:
    """A method exceeding its declared timeout is stopped with DEADLINE_EXCEEDED."""
    started = time.monotonic()
    with pytest.raises(lumi.DeadlineExceeded):
        await dispatcher.handle(call("slow"))
    assert time.monotonic() - started < 2.5  # stopped at its 50 ms timeout, not after 5 s


async def test_expired_deadline_is_rejected_before_running(dispatcher: Dispatcher) -> None:
    """A call arriving after its deadline is refused at once."""
    with pytest.raises(lumi.DeadlineExceeded, match="before Calc.add ran"):
        await dispatcher.handle(call("add", {"a": 1, "b": 1}, deadline=time.time() - 1))


async def test_context_is_visible_inside_the_handler(dispatcher: Dispatcher) -> None:
    """lumi.context() inside a handler carries the call's service, method and metadata."""
    result = json.loads(await dispatcher.handle(call("where", correlation_id="c-1")))
    assert result == {"service": "Calc", "method": "where", "cid": "c-1"}
    assert lumi.context() is None


async def test_middleware_wraps_in_order() -> None:
    """Middlewares run outermost-first around the handler, each seeing the call it wraps."""
    seen: list[str] = []

    def named(label: str):  # type: ignore[no-untyped-def]
        async def middleware(call: Call, next_handler: Handler) -> bytes:
            seen.append(f"{label}>{call.method}")
            try:
                return await next_handler(call)
            finally:
                seen.append(f"<{label}")

        return middleware

    d = Dispatcher([named("a"), named("b")])
    d.add(Calc())
    assert await d.handle(call("add", {"a": 1, "b": 1})) == b"2"
    assert seen == ["a>add", "b>add", "<b", "<a"]


def test_error_codes_map_to_http_and_back() -> None:
    """Each code has an HTTP status and rebuilds into its own class from data."""
    for code in lumi.StatusCode:
        cls = lumi.LumiError.for_code(code)
        assert cls.code is code
        error = lumi.LumiError.from_wire({"code": code.value, "message": "m", "details": [1]})
        assert type(error) is cls and error.message == "m" and error.details == [1]
        assert 400 <= code.http_status <= 599
    assert lumi.StatusCode.NOT_FOUND.http_status == 404
    assert lumi.StatusCode.UNAVAILABLE.grpc_value == 14
    assert type(lumi.LumiError.from_wire({"code": "WHAT"})) is lumi.Unknown
    assert type(lumi.LumiError.from_wire("junk")) is lumi.Unknown


async def test_composed_layers_are_bound_methods_of_the_same_objects() -> None:
    """compose() calls a middleware object through its bound __call__ (no lookup per call):
    the same instance, its state seen; a plain function or partial is left as it is."""
    import functools
    from typing import Any

    from lumi.model.context import Metadata
    from lumi.pipeline import Call, compose
    from lumi.pipeline.call import bound

    class Counting:
        def __init__(self) -> None:
            self.seen = 0

        async def __call__(self, call: Call, next_handler: Any) -> bytes:
            self.seen += 1
            return await next_handler(call)

    class Inner:
        async def __call__(self, call: Call) -> bytes:
            return call.body

    async def plain(call: Call) -> bytes:
        return call.body

    outer = Counting()
    handler = compose(Inner(), [outer, outer])
    assert await handler(Call("S", "m", b"x", Metadata())) == b"x"
    assert outer.seen == 2
    assert bound(plain) is plain
    partial = functools.partial(plain)
    assert bound(partial) is partial
    assert bound(Inner) is Inner  # a class is called to make an instance, not bound


async def test_a_local_call_leaves_the_callers_metadata_as_it_was() -> None:
    """The server side sets correlation and traceparent on the call it serves in place: the
    local channel hands it a copy, so what the caller holds (and sends on a retry) is its own."""
    from lumi.runtime_services.observability.middleware import ServerObserver
    from lumi.runtime_services.observability.tracing import Tracing
    from lumi.transports.local import LocalChannel

    seen: list[Metadata] = []

    async def record(c: Call, next_handler: Handler) -> bytes:
        seen.append(c.metadata)
        c.metadata.authorization = None  # as the guard does with a token it read
        return await next_handler(c)

    d = Dispatcher([ServerObserver(Tracing(sample_ratio=0.0)), record])
    d.add(Calc())
    channel = LocalChannel(d.handle)
    sent = call("where", correlation_id="c-1", authorization="Bearer t", caller="spiffe://x/y")
    before = dataclasses.replace(sent.metadata)
    for _ in range(2):  # a retry sends the same call again
        answer = json.loads(await channel.call(sent))
        assert answer["cid"] == "c-1"
    assert sent.metadata == before
    assert seen[0] is not sent.metadata and seen[0].traceparent is not None
    assert seen[0].caller is None  # in-process there is no certificate
