"""The call contract of docs/spec.md, driven over real loopback connections."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
from typing import Any

import pytest
from google.protobuf.wrappers_pb2 import Int32Value, StringValue
from mw_support import Echo, expect_status, serve

from grpcasgi import Cardinality, Deadline, GRPCError, Middleware, Status
from grpcasgi.call import CancelReason
from grpcasgi.middleware import CallObserver, CallOutcome, Ending, send_status
from grpcasgi.server import Server
from grpcasgi.types import App, Receive, ReceiveEvent, Scope, Send, SendEvent


class Recorder:
    """Records enter/exit and the events it sees under its name."""

    def __init__(self, app: App, *, name: str, log: list[str]) -> None:
        self.app = app
        self.name = name
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.log.append(f"enter {self.name}")

        async def rec_send(event: SendEvent) -> None:
            self.log.append(f"{self.name} send {event['type']}")
            await send(event)

        try:
            await self.app(scope, receive, rec_send)
        finally:
            self.log.append(f"exit {self.name}")


class Observe:
    """Hands every call's CallOutcome to ``outcomes`` and sets ``done``."""

    def __init__(self, app: App, *, outcomes: list[CallOutcome], done: asyncio.Event | None = None) -> None:
        self.app = app
        self.outcomes = outcomes
        self.done = done

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        def on_end(outcome: CallOutcome) -> None:
            self.outcomes.append(outcome)
            if self.done is not None:
                self.done.set()

        async with CallObserver(scope, receive, send, on_end=on_end) as call:
            await self.app(scope, call.receive, call.send)


class Raise:
    """Raises ``error`` instead of calling the inner app."""

    def __init__(self, app: App, *, error: BaseException) -> None:
        self.app = app
        self.error = error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise self.error


class SetDeadline:
    def __init__(self, app: App, *, timeout: float | None) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["deadline"] = Deadline.from_timeout(self.timeout) if self.timeout is not None else None
        await self.app(scope, receive, send)


async def test_first_middleware_is_outermost() -> None:
    log: list[str] = []
    echo = Echo()

    async def hook(stream: Any) -> None:
        log.append("handler")

    echo.hooks["Unary"] = hook
    middleware = [Middleware(Recorder, name=n, log=log) for n in ("a", "b", "c")]
    async with serve(middleware, [echo]) as (_, client):
        assert await client.unary("x") == "echo:x"
    assert log == [
        "enter a",
        "enter b",
        "enter c",
        "handler",
        # send events travel from the handler outwards: innermost first
        "c send grpc.response.start",
        "b send grpc.response.start",
        "a send grpc.response.start",
        "c send grpc.response.message",
        "b send grpc.response.message",
        "a send grpc.response.message",
        "c send grpc.response.end",
        "b send grpc.response.end",
        "a send grpc.response.end",
        "exit c",
        "exit b",
        "exit a",
    ]


class Reject:
    """Ends every call PERMISSION_DENIED without calling the inner app."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_status(send, Status.PERMISSION_DENIED, "no")


async def test_rejection_before_the_handler_never_enters_it() -> None:
    echo = Echo()
    log: list[str] = []
    async with serve([Middleware(Recorder, name="outer", log=log), Middleware(Reject)], [echo]) as (_, client):
        err = await expect_status(client.unary(), Status.PERMISSION_DENIED)
        assert err.message == "no"
        # streaming methods too: the request stream is discarded
        await expect_status(client.Sum([Int32Value(value=i) for i in range(100)]), Status.PERMISSION_DENIED)
    assert echo.entered == []
    assert log.count("outer send grpc.response.end") == 2


async def test_messages_are_decoded_once_and_replaceable() -> None:
    seen: list[tuple[Any, int]] = []

    class Upper:
        def __init__(self, app: App) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            async def upper_receive() -> ReceiveEvent:
                event = await receive()
                if event["type"] == "grpc.request.message":
                    seen.append((event["message"], event["size"]))
                    return {**event, "message": StringValue(value=event["message"].value.upper())}
                return event

            async def suffix_send(event: SendEvent) -> None:
                if event["type"] == "grpc.response.message":
                    event = {**event, "message": StringValue(value=event["message"].value + "!")}
                await send(event)

            await self.app(scope, upper_receive, suffix_send)

    async with serve([Middleware(Upper)]) as (_, client):
        assert await client.unary("abc") == "echo:ABC!"
    message, size = seen[0]
    assert isinstance(message, StringValue) and message.value == "abc"
    assert size == len(StringValue(value="abc").SerializeToString())


async def test_unknown_method_flows_through_middleware_and_ends_unimplemented() -> None:
    scopes: list[dict[str, Any]] = []
    outcomes: list[CallOutcome] = []

    class Capture:
        def __init__(self, app: App) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            scopes.append(dict(scope))
            await self.app(scope, receive, send)

    async with serve([Middleware(Capture), Middleware(Observe, outcomes=outcomes)]) as (_, client):
        err = await expect_status(client.Missing(StringValue(value="x")), Status.UNIMPLEMENTED)
        assert "/test.Echo/Missing" in (err.message or "")
    (scope,) = scopes
    assert scope["handler"] is None and scope["cardinality"] is None and scope["request_type"] is None
    assert (scope["service"], scope["method"]) == ("test.Echo", "Missing")
    assert outcomes[0].status is Status.UNIMPLEMENTED and outcomes[0].ending is Ending.EVENT


async def test_unknown_method_messages_are_raw_bytes() -> None:
    raw: list[Any] = []

    class Peek:
        def __init__(self, app: App) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            event = await receive()
            raw.append(event)
            await self.app(scope, receive, send)

    async with serve([Middleware(Peek)]) as (_, client):
        await expect_status(client.Missing(StringValue(value="x")), Status.UNIMPLEMENTED)
    assert raw[0]["type"] == "grpc.request.message"
    assert raw[0]["message"] == StringValue(value="x").SerializeToString()
    assert raw[0]["size"] == len(raw[0]["message"])


marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")


async def test_state_and_contextvars_reach_the_handler() -> None:
    class Tag:
        def __init__(self, app: App) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            scope["state"]["tenant"] = "acme"
            token = marker.set("from-middleware")
            try:
                await self.app(scope, receive, send)
            finally:
                marker.reset(token)

    echo = Echo()

    async def hook(stream: Any) -> None:
        echo.seen["state"] = dict(stream.state)
        echo.seen["marker"] = marker.get()

    echo.hooks["Unary"] = hook
    async with serve([Middleware(Tag)], [echo]) as (_, client):
        await client.unary()
    assert echo.seen == {"state": {"tenant": "acme"}, "marker": "from-middleware"}
    assert marker.get() == "unset"


async def test_add_middleware_refused_after_start() -> None:
    server = Server([Echo()])
    server.add_middleware(Reject)
    await server.start("127.0.0.1", 0)
    try:
        with pytest.raises(RuntimeError):
            server.add_middleware(Reject)
        server.middleware.append(Middleware(Reject))  # a copy: no effect on the running stack
        assert len(server.middleware) == 1
    finally:
        server.close()
        await server.wait_closed()


async def test_middleware_entries_must_be_middleware() -> None:
    server = Server([Echo()], middleware=[Reject])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        await server.start("127.0.0.1", 0)


# -- how a call ends, as seen by CallObserver --------------------------------------------------


async def test_observer_ok_counts_messages() -> None:
    outcomes: list[CallOutcome] = []
    async with serve([Middleware(Observe, outcomes=outcomes)]) as (_, client):
        replies = await client.Count(Int32Value(value=3))
        assert [r.value for r in replies] == [0, 1, 2]
        total = await client.Sum([Int32Value(value=i) for i in (1, 2, 3, 4)])
        assert total.value == 10
    count, summed = outcomes
    assert count.status is Status.OK and count.ok and count.ending is Ending.EVENT
    assert (count.request_messages, count.response_messages, count.response_started) == (1, 3, True)
    assert count.request_bytes == Int32Value(value=3).ByteSize()
    assert count.response_bytes == sum(Int32Value(value=i).ByteSize() for i in range(3))
    assert (summed.request_messages, summed.response_messages) == (4, 1)
    assert count.duration >= 0 and count.error is None and count.cancel_reason is None


async def test_observer_outcome_is_an_ordinary_frozen_call_outcome() -> None:
    # CallObserver builds outcomes without the dataclass __init__ (for speed):
    # what it builds must be indistinguishable from a CallOutcome(...) call.
    outcomes: list[CallOutcome] = []
    async with serve([Middleware(Observe, outcomes=outcomes)]) as (_, client):
        await client.Count(Int32Value(value=1))
    (outcome,) = outcomes
    fields = {f.name: getattr(outcome, f.name) for f in dataclasses.fields(CallOutcome)}
    assert outcome == CallOutcome(**fields)
    assert repr(outcome) == repr(CallOutcome(**fields))
    assert dataclasses.replace(outcome, status=Status.ABORTED).status is Status.ABORTED
    with pytest.raises(dataclasses.FrozenInstanceError):
        outcome.status = Status.CANCELLED  # type: ignore[misc]


async def test_observer_sees_handler_grpc_error_as_end_event() -> None:
    outcomes: list[CallOutcome] = []
    async with serve([Middleware(Observe, outcomes=outcomes)]) as (_, client):
        await expect_status(client.Fail(StringValue(value="grpc:NOT_FOUND")), Status.NOT_FOUND)
    (outcome,) = outcomes
    assert outcome.ending is Ending.EVENT
    assert (outcome.status, outcome.message, outcome.error) == (Status.NOT_FOUND, "failed on purpose", None)


async def test_observer_sees_grpc_error_raised_by_inner_middleware() -> None:
    outcomes: list[CallOutcome] = []
    error = GRPCError(Status.FAILED_PRECONDITION, "not now")
    mw = [Middleware(Observe, outcomes=outcomes), Middleware(Raise, error=error)]
    async with serve(mw) as (_, client):
        err = await expect_status(client.unary(), Status.FAILED_PRECONDITION)
        assert err.message == "not now"
    assert outcomes[0].ending is Ending.GRPC_ERROR and outcomes[0].status is Status.FAILED_PRECONDITION
    assert outcomes[0].error is error


async def test_observer_sees_other_exceptions_as_unknown(caplog: pytest.LogCaptureFixture) -> None:
    outcomes: list[CallOutcome] = []
    async with serve([Middleware(Observe, outcomes=outcomes)]) as (_, client):
        err = await expect_status(client.Fail(StringValue(value="runtime")), Status.UNKNOWN)
    assert err.message == "Internal Server Error"  # the exception's text is not sent
    (outcome,) = outcomes
    assert outcome.ending is Ending.EXCEPTION and outcome.status is Status.UNKNOWN
    assert isinstance(outcome.error, RuntimeError)
    assert "Application error while handling /test.Echo/Fail" in caplog.text


async def test_observer_sees_deadline_set_by_middleware() -> None:
    outcomes: list[CallOutcome] = []
    done = asyncio.Event()
    echo = Echo()
    mw = [Middleware(Observe, outcomes=outcomes, done=done), Middleware(SetDeadline, timeout=0.05)]
    async with serve(mw, [echo]) as (_, client):
        err = await expect_status(client.Wait(StringValue(value="x"), timeout=30), Status.DEADLINE_EXCEEDED)
        await asyncio.wait_for(done.wait(), 5)
    assert err.message == "Deadline exceeded"
    assert echo.cancelled.is_set()
    (outcome,) = outcomes
    assert outcome.ending is Ending.CANCELLED and outcome.status is Status.DEADLINE_EXCEEDED
    assert outcome.cancel_reason is CancelReason.DEADLINE
    assert isinstance(outcome.error, asyncio.CancelledError)


async def test_observer_sees_client_cancellation() -> None:
    outcomes: list[CallOutcome] = []
    done = asyncio.Event()
    echo = Echo()
    async with serve([Middleware(Observe, outcomes=outcomes, done=done)], [echo]) as (_, client):
        stream = client.channel.request("/test.Echo/Wait", Cardinality.UNARY_UNARY, StringValue, StringValue)
        await stream.send_message(StringValue(value="x"), end=True)
        await asyncio.wait_for(echo.waiting.wait(), 5)
        await stream.cancel()
        await asyncio.wait_for(done.wait(), 5)
    (outcome,) = outcomes
    assert outcome.ending is Ending.CANCELLED and outcome.status is Status.CANCELLED
    assert outcome.cancel_reason is CancelReason.RESET
    assert echo.cancelled.is_set()


async def test_observer_sees_incomplete_call() -> None:
    outcomes: list[CallOutcome] = []

    class ReturnEarly:
        def __init__(self, app: App) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            return None

    async with serve([Middleware(Observe, outcomes=outcomes), Middleware(ReturnEarly)]) as (_, client):
        await expect_status(client.unary(), Status.UNKNOWN)
    assert outcomes[0].ending is Ending.INCOMPLETE and outcomes[0].status is Status.UNKNOWN


async def test_observer_callback_errors_do_not_break_calls(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def __init__(self, app: App) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            def on_end(outcome: CallOutcome) -> None:
                raise ZeroDivisionError

            async with CallObserver(scope, receive, send, on_end=on_end) as call:
                await self.app(scope, call.receive, call.send)

    async with serve([Middleware(Broken)]) as (_, client):
        assert await client.unary("x") == "echo:x"
    assert "call observer callback" in caplog.text


# -- deadlines changed by middleware -------------------------------------------------------------


async def test_middleware_can_shorten_the_deadline_and_the_handler_sees_it() -> None:
    echo = Echo()

    async def hook(stream: Any) -> None:
        echo.seen["deadline"] = stream.deadline

    echo.hooks["Unary"] = hook
    async with serve([Middleware(SetDeadline, timeout=5.0)], [echo]) as (_, client):
        await client.unary(timeout=60)
    remaining = echo.seen["deadline"].time_remaining()
    assert 0 < remaining <= 5.0


@pytest.mark.parametrize("timeout", [None, 120.0], ids=["removed", "lengthened"])
async def test_middleware_cannot_lift_the_clients_deadline(timeout: float | None) -> None:
    echo = Echo()
    async with serve([Middleware(SetDeadline, timeout=timeout)], [echo]) as (_, client):
        stream = client.channel.request("/test.Echo/Wait", Cardinality.UNARY_UNARY, StringValue, StringValue)
        async with stream:
            # The client's own timer would reset the stream; the server's one must
            # fire first to show it is still armed, so the client waits longer.
            stream.deadline = Deadline.from_timeout(0.1)
            await stream.send_request()
            stream.deadline = None
            if stream._timer is not None:  # keep only the server-side deadline in play
                stream._timer.cancel()
            await stream.send_message(StringValue(value="x"), end=True)
            with pytest.raises(GRPCError) as info:
                await asyncio.wait_for(stream.recv_message(), 10)
    assert info.value.status is Status.DEADLINE_EXCEEDED
    # and the handler saw the client's deadline, not the lifted one
    assert echo.seen["wait_deadline"].time_remaining() == 0
