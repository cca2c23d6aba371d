"""Client middleware stack: ordering, what middleware can change and observe, and a
client ``Stream`` API that behaves the same with and without middleware.

Every call goes over a real loopback connection to the bundled server.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import pytest

from client_mw_support import IV, SS, SU, SV, US, UU, Recorder, Service, echo_service
from grpcasgi import Deadline, GRPCError, Middleware, Status
from grpcasgi.client import Channel, Stream, UnaryStreamMethod, UnaryUnaryMethod
from grpcasgi.client_stack import StackStream
from grpcasgi.types import ClientScope, Receive, Send


class Passthrough:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: ClientScope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


# -- ordering and the events middleware sees ---------------------------------------


async def test_order_first_entry_is_outermost(start_server: Any, make_channel: Any) -> None:
    server = await start_server()
    log: list[Any] = []
    channel = make_channel(
        server.port,
        middleware=[Middleware(Recorder, name="outer", log=log), Middleware(Recorder, name="inner", log=log)],
    )
    reply = await UnaryUnaryMethod(channel, "/t.Echo/Unary", SV, SV)(SV(value="hi"))
    assert reply.value == "hi"
    assert log == [
        ("outer", "call", "/t.Echo/Unary"),
        ("inner", "call", "/t.Echo/Unary"),
        ("outer", "grpc.request.message"),  # requests flow inwards,
        ("inner", "grpc.request.message"),
        ("inner", "grpc.response.start"),  # responses outwards
        ("outer", "grpc.response.start"),
        ("inner", "grpc.response.message"),
        ("outer", "grpc.response.message"),
        ("inner", "grpc.response.end", Status.OK),
        ("outer", "grpc.response.end", Status.OK),
        ("inner", "return"),
        ("outer", "return"),
    ]


async def test_scope_contents(start_server: Any, make_channel: Any) -> None:
    server = await start_server()
    scopes: list[ClientScope] = []
    channel = make_channel(server.port, middleware=[Middleware(Recorder, name="r", log=[], on_scope=scopes.append)])
    await UnaryUnaryMethod(channel, "/t.Echo/Unary", SV, SV)(SV(value="x"), timeout=5, metadata={"k": "v"})
    (scope,) = scopes
    assert scope["type"] == "grpc.client"
    assert scope["path"] == "/t.Echo/Unary"
    assert (scope["service"], scope["method"]) == ("t.Echo", "Unary")
    assert scope["cardinality"] is UU
    assert scope["request_type"] is SV and scope["reply_type"] is SV
    assert list(scope["metadata"].items()) == [("k", "v")]
    assert isinstance(scope["deadline"], Deadline) and 4 < scope["deadline"].time_remaining() <= 5
    assert scope["authority"] == f"127.0.0.1:{server.port}"
    assert scope["encoding"] is None
    assert scope["state"] == {}
    assert scope["extensions"]["peer"].addr()[1] == server.port


async def test_trailers_only_response_has_no_start_event(start_server: Any, make_channel: Any) -> None:
    async def fail(stream: Any) -> None:
        raise GRPCError(Status.NOT_FOUND, "nothing here")

    server = await start_server([Service("t.S", Fail=(fail, UU))])
    log: list[Any] = []
    channel = make_channel(server.port, middleware=[Middleware(Recorder, name="r", log=log)])
    with pytest.raises(GRPCError) as info:
        await UnaryUnaryMethod(channel, "/t.S/Fail", SV, SV)(SV(value="x"))
    assert info.value.status is Status.NOT_FOUND and info.value.message == "nothing here"
    assert [e[1] for e in log] == ["call", "grpc.request.message", "grpc.response.end", "return"]
    assert log[2] == ("r", "grpc.response.end", Status.NOT_FOUND)


# -- what middleware can change ---------------------------------------------------------


class AddMetadata:
    def __init__(self, app: Any, **values: str) -> None:
        self.app = app
        self.values = values

    async def __call__(self, scope: ClientScope, receive: Receive, send: Send) -> None:
        for key, value in self.values.items():
            scope["metadata"].add(key.replace("_", "-"), value)
        await self.app(scope, receive, send)


class ShortenDeadline:
    def __init__(self, app: Any, *, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: ClientScope, receive: Receive, send: Send) -> None:
        scope["deadline"] = Deadline.from_timeout(self.seconds)
        await self.app(scope, receive, send)


async def test_metadata_added_by_middleware_reaches_the_server(start_server: Any, make_channel: Any) -> None:
    async def show(stream: Any) -> None:
        await stream.recv_message()
        await stream.send_message(SV(value=",".join(stream.metadata.getall("x-tenant"))))

    server = await start_server([Service("t.S", Show=(show, UU))])
    channel = make_channel(server.port, middleware=[Middleware(AddMetadata, x_tenant="acme")])
    reply = await UnaryUnaryMethod(channel, "/t.S/Show", SV, SV)(SV(), metadata=[("x-tenant", "caller")])
    assert reply.value == "caller,acme"


async def test_deadline_set_by_middleware_is_sent_and_enforced(start_server: Any, make_channel: Any) -> None:
    seen: list[float] = []

    async def slow(stream: Any) -> None:
        await stream.recv_message()
        seen.append(stream.deadline.time_remaining())
        await asyncio.Event().wait()  # until the deadline cancels us

    server = await start_server([Service("t.S", Slow=(slow, UU))])
    channel = make_channel(server.port, middleware=[Middleware(ShortenDeadline, seconds=0.3)])
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(GRPCError) as info:
        await UnaryUnaryMethod(channel, "/t.S/Slow", SV, SV)(SV(), timeout=30)
    assert info.value.status is Status.DEADLINE_EXCEEDED
    assert loop.time() - started < 5
    assert seen and 0 < seen[0] <= 0.3


# -- status, exceptions and short-circuits ---------------------------------------------


class RaiseStatus:
    def __init__(self, app: Any, *, status: Status) -> None:
        self.app = app
        self.status = status

    async def __call__(self, scope: ClientScope, receive: Receive, send: Send) -> None:
        raise GRPCError(self.status, "refused by client middleware")


class Boom:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: ClientScope, receive: Receive, send: Send) -> None:
        raise RuntimeError("bug in middleware")


class Cached:
    """Answers without calling the server."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: ClientScope, receive: Receive, send: Send) -> None:
        request = await receive()
        assert request["type"] == "grpc.request.message"
        await send({"type": "grpc.response.start", "metadata": {"x-cache": "hit"}})
        await send({"type": "grpc.response.message", "message": SV(value="cached:" + request["message"].value)})
        await send({"type": "grpc.response.end", "status": Status.OK, "metadata": {"x-age": "3"}})


class Silent:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: ClientScope, receive: Receive, send: Send) -> None:
        return None


@pytest.mark.parametrize("path,card", [("/t.Echo/Unary", UU), ("/t.Echo/Upper", SS)])
async def test_middleware_grpc_error_becomes_the_status(start_server: Any, make_channel: Any, path: str, card: Any) -> None:
    server = await start_server()
    log: list[Any] = []
    channel = make_channel(
        server.port,
        middleware=[Middleware(Recorder, name="r", log=log), Middleware(RaiseStatus, status=Status.PERMISSION_DENIED)],
    )
    async with channel.request(path, card, SV, SV) as stream:
        await stream.send_message(SV(value="x"), end=True)
        with pytest.raises(GRPCError) as info:
            await stream.recv_message()
    assert info.value.status is Status.PERMISSION_DENIED
    assert info.value.message == "refused by client middleware"
    assert stream.trailing_metadata == {}


async def test_middleware_exception_reaches_the_caller(start_server: Any, make_channel: Any) -> None:
    server = await start_server()
    channel = make_channel(server.port, middleware=[Middleware(Boom)])
    with pytest.raises(RuntimeError, match="bug in middleware"):
        await UnaryUnaryMethod(channel, "/t.Echo/Unary", SV, SV)(SV(value="x"))
    with pytest.raises(RuntimeError, match="bug in middleware"):
        await UnaryStreamMethod(channel, "/t.Echo/Split", SV, SV)(SV(value="x"))


async def test_middleware_can_answer_without_the_server(make_channel: Any) -> None:
    channel = make_channel(1, middleware=[Middleware(Cached)])  # nothing listens on port 1
    async with channel.request("/t.Echo/Unary", UU, SV, SV) as stream:
        await stream.send_message(SV(value="q"), end=True)
        await stream.recv_initial_metadata()
        assert stream.initial_metadata == {"x-cache": "hit"}
        assert (await stream.recv_message()).value == "cached:q"
        await stream.recv_trailing_metadata()
    assert stream.trailing_metadata == {"x-age": "3"}


async def test_stack_returning_without_status_is_unknown(make_channel: Any) -> None:
    channel = make_channel(1, middleware=[Middleware(Silent)])
    with pytest.raises(GRPCError) as info:
        await UnaryUnaryMethod(channel, "/t.Echo/Unary", SV, SV)(SV(value="q"))
    assert info.value.status is Status.UNKNOWN


async def test_connection_failure_is_an_end_event(make_channel: Any) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log: list[Any] = []
    channel = make_channel(port, middleware=[Middleware(Recorder, name="r", log=log)])
    with pytest.raises(GRPCError) as info:
        await UnaryUnaryMethod(channel, "/t.Echo/Unary", SV, SV)(SV(value="q"))
    assert info.value.status is Status.UNAVAILABLE
    assert log[-2] == ("r", "grpc.response.end", Status.UNAVAILABLE)


# -- cost: unary calls run inline -------------------------------------------------------


async def test_unary_calls_with_middleware_create_no_task(start_server: Any, make_channel: Any) -> None:
    server = await start_server()
    channel = make_channel(server.port, middleware=[Middleware(Passthrough), Middleware(Passthrough)])
    method = UnaryUnaryMethod(channel, "/t.Echo/Unary", SV, SV)
    await method(SV(value="warm-up"))  # connects (that takes a task)
    loop = asyncio.get_running_loop()
    created: list[Any] = []
    previous = loop.get_task_factory()

    def factory(loop: Any, coro: Any, **kwargs: Any) -> Any:
        frame = getattr(coro, "cr_code", None)
        created.append(getattr(frame, "co_name", coro))
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(factory)
    try:
        for i in range(5):
            assert (await method(SV(value=str(i)))).value == str(i)
        client_tasks = [name for name in created if name in ("_run_stack", "_pump")]
        assert client_tasks == []
        await UnaryStreamMethod(channel, "/t.Echo/Split", SV, SV)(SV(value="a,b"))
        assert [name for name in created if name in ("_run_stack", "_pump")] == ["_run_stack"]
    finally:
        loop.set_task_factory(previous)


# -- the Stream API is the same with and without middleware ------------------------------


async def _outcome(coro: Any) -> Any:
    try:
        return ("ok", await coro)
    except GRPCError as exc:
        return ("error", exc.status, exc.message)


def _md(md: Any) -> Any:
    return None if md is None else sorted(md.items())


async def scenario_unary_metadata(channel: Channel) -> Any:
    async with channel.request("/t.S/Meta", UU, SV, SV, metadata={"x-in": "1"}) as stream:
        await stream.send_message(SV(value="a"), end=True)
        await stream.recv_initial_metadata()
        initial = _md(stream.initial_metadata)
        reply = await stream.recv_message()
        after = await stream.recv_message()
        await stream.recv_trailing_metadata()
    return initial, reply.value, after, _md(stream.trailing_metadata)


async def scenario_error_after_messages(channel: Channel) -> Any:
    got = []
    async with channel.request("/t.S/Partial", US, SV, SV) as stream:
        await stream.send_message(SV(value="a,b"), end=True)
        try:
            async for reply in stream:
                got.append(reply.value)
        except GRPCError as exc:
            got.append((exc.status, exc.message))
        again = await _outcome(stream.recv_message())  # the status is reported again
    return got, again, _md(stream.initial_metadata), _md(stream.trailing_metadata)


async def scenario_trailers_only_error(channel: Channel) -> Any:
    async with channel.request("/t.S/Fail", UU, SV, SV) as stream:
        await stream.send_message(SV(value="a"), end=True)
        await stream.recv_initial_metadata()
        first = await _outcome(stream.recv_message())
    return _md(stream.initial_metadata), first, _md(stream.trailing_metadata)


async def scenario_exit_raises_status(channel: Channel) -> Any:
    async def body() -> None:
        async with channel.request("/t.S/Fail", UU, SV, SV) as stream:
            await stream.send_message(SV(value="a"), end=True)

    return await _outcome(body())


async def scenario_client_stream(channel: Channel) -> Any:
    async with channel.request("/t.Echo/Join", SU, SV, SV) as stream:
        await stream.send_request()
        for part in "abc":
            await stream.send_message(SV(value=part))
        await stream.end()
        reply = await stream.recv_message()
        await stream.recv_trailing_metadata()
    return reply.value


async def scenario_bidi_ping_pong(channel: Channel) -> Any:
    got = []
    async with channel.request("/t.Echo/Upper", SS, SV, SV) as stream:
        await stream.send_request()
        for word in ("x", "y", "z"):
            await stream.send_message(SV(value=word))
            got.append((await stream.recv_message()).value)
        await stream.end()
        got.append(await stream.recv_message())
    return got


async def scenario_unimplemented(channel: Channel) -> Any:
    return await _outcome(UnaryUnaryMethod(channel, "/t.Nope/Nope", SV, SV)(SV()))


async def scenario_deadline(channel: Channel) -> Any:
    return await _outcome(UnaryUnaryMethod(channel, "/t.S/Hang", SV, SV)(SV(), timeout=0.2))


async def scenario_cancel(channel: Channel) -> Any:
    async with channel.request("/t.Echo/Upper", SS, SV, SV) as stream:
        await stream.send_message(SV(value="a"))
        first = (await stream.recv_message()).value
        await stream.cancel()
        after = await _outcome(stream.recv_message())
    return first, after


async def scenario_trailing_without_reading(channel: Channel) -> Any:
    async with channel.request("/t.Echo/Split", US, SV, SV) as stream:
        await stream.send_message(SV(value="a,b,c"), end=True)
        await stream.recv_trailing_metadata()
    return _md(stream.initial_metadata), _md(stream.trailing_metadata)


async def scenario_many_messages(channel: Channel) -> Any:
    async with channel.request("/t.S/Sum", SU, IV, IV) as stream:
        for i in range(500):
            await stream.send_message(IV(value=i))
        await stream.end()
        reply = await stream.recv_message()
    return reply.value


async def scenario_peer(channel: Channel) -> Any:
    async with channel.request("/t.Echo/Unary", UU, SV, SV) as stream:
        await stream.send_message(SV(value="a"), end=True)
        await stream.recv_message()
    return stream.peer is not None and stream.peer.addr()[0]


SCENARIOS: list[Callable[[Channel], Any]] = [
    scenario_unary_metadata,
    scenario_error_after_messages,
    scenario_trailers_only_error,
    scenario_exit_raises_status,
    scenario_client_stream,
    scenario_bidi_ping_pong,
    scenario_unimplemented,
    scenario_deadline,
    scenario_cancel,
    scenario_trailing_without_reading,
    scenario_many_messages,
    scenario_peer,
]


def parity_service() -> Service:
    async def meta(stream: Any) -> None:
        request = await stream.recv_message()
        await stream.send_initial_metadata(metadata={"x-initial": stream.metadata["x-in"]})
        await stream.send_message(SV(value=request.value * 2))
        await stream.send_trailing_metadata(metadata={"x-trailing": "t"})

    async def partial(stream: Any) -> None:
        request = await stream.recv_message()
        for part in request.value.split(","):
            await stream.send_message(SV(value=part))
        raise GRPCError(Status.INTERNAL, "broke after messages")

    async def fail(stream: Any) -> None:
        await stream.send_trailing_metadata(status=Status.NOT_FOUND, status_message="gone", metadata={"x-why": "w"})

    async def hang(stream: Any) -> None:
        await asyncio.Event().wait()

    async def total(stream: Any) -> None:
        await stream.send_message(IV(value=sum([m.value async for m in stream])))

    return Service(
        "t.S",
        Meta=(meta, UU),
        Partial=(partial, US),
        Fail=(fail, UU),
        Hang=(hang, UU),
        Sum=(total, SU, IV, IV),
    )


async def test_stream_api_is_the_same_with_and_without_middleware(start_server: Any, make_channel: Any) -> None:
    server = await start_server([echo_service(), parity_service()])
    plain = make_channel(server.port)
    stacked = make_channel(server.port, middleware=[Middleware(Passthrough), Middleware(Recorder, name="r", log=[])])
    for scenario in SCENARIOS:
        expected = await scenario(plain)
        stream = stacked.request("/t.Echo/Unary", UU, SV, SV)
        assert isinstance(stream, StackStream) and isinstance(stream, Stream)
        got = await scenario(stacked)
        assert got == expected, scenario.__name__


async def test_request_side_protocol_errors(start_server: Any, make_channel: Any) -> None:
    from grpcasgi import ProtocolError

    server = await start_server()
    channel = make_channel(server.port, middleware=[Middleware(Passthrough)])
    async with channel.request("/t.Echo/Upper", SS, SV, SV) as stream:
        with pytest.raises(ProtocolError):
            await stream.recv_message()  # nothing sent yet
        await stream.send_request()
        with pytest.raises(ProtocolError):
            await stream.send_request()
        await stream.end()
        with pytest.raises(ProtocolError):
            await stream.send_message(SV(value="late"))
        assert await stream.recv_message() is None


async def test_caller_cancellation_resets_the_server_call(start_server: Any, make_channel: Any) -> None:
    entered = asyncio.Event()
    cancelled = asyncio.Event()

    async def hang(stream: Any) -> None:
        await stream.recv_message()
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    server = await start_server([Service("t.S", Hang=(hang, UU), HangStream=(hang, US))])
    channel = make_channel(server.port, middleware=[Middleware(Passthrough)])
    for path, method in (("/t.S/Hang", UnaryUnaryMethod), ("/t.S/HangStream", UnaryStreamMethod)):
        entered.clear()
        cancelled.clear()
        call = asyncio.ensure_future(method(channel, path, SV, SV)(SV()))
        await asyncio.wait_for(entered.wait(), 5)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await asyncio.wait_for(cancelled.wait(), 5)


async def test_uncompressed_message_and_compressed_replies(start_server: Any, make_channel: Any) -> None:
    server = await start_server()
    channel = make_channel(server.port, compression="gzip", middleware=[Middleware(Passthrough)])
    async with channel.request("/t.Echo/Upper", SS, SV, SV) as stream:
        await stream.send_message(SV(value="a" * 100), compress=False)
        reply = await stream.recv_message()
        await stream.end()
    assert reply.value == "A" * 100
    assert stream.last_message_compressed is not None


async def test_cancel_from_another_task_stops_an_inline_unary_call(start_server: Any, make_channel: Any) -> None:
    entered = asyncio.Event()
    cancelled = asyncio.Event()

    async def hang(stream: Any) -> None:
        await stream.recv_message()
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    server = await start_server([Service("t.S", Hang=(hang, UU))])
    channel = make_channel(server.port, middleware=[Middleware(Passthrough)])
    async with channel.request("/t.S/Hang", UU, SV, SV) as stream:
        await stream.send_message(SV(value="x"), end=True)
        receiving = asyncio.ensure_future(stream.recv_message())
        await asyncio.wait_for(entered.wait(), 5)
        await stream.cancel()
        with pytest.raises(GRPCError) as info:
            await receiving
    assert info.value.status is Status.CANCELLED
    await asyncio.wait_for(cancelled.wait(), 5)  # the server saw the reset


async def test_client_stream_backpressure_reaches_the_caller(start_server: Any, make_channel: Any) -> None:
    """With a server that does not read, the caller's send_message stops returning
    after the HTTP/2 windows and the small stack queue are full."""
    from google.protobuf.wrappers_pb2 import BytesValue

    release = asyncio.Event()

    async def lazy(stream: Any) -> None:
        await release.wait()
        total = 0
        async for message in stream:
            total += len(message.value)
        await stream.send_message(IV(value=total // (1024 * 1024)))

    server = await start_server([Service("t.S", Lazy=(lazy, SU, BytesValue, IV))])
    channel = make_channel(server.port, middleware=[Middleware(Passthrough)])
    chunk = BytesValue(value=b"x" * (1024 * 1024))
    sent = 0
    async with channel.request("/t.S/Lazy", SU, BytesValue, IV) as stream:

        async def send_all() -> None:
            nonlocal sent
            for _ in range(64):
                await stream.send_message(chunk)
                sent += 1
            await stream.end()

        sender = asyncio.ensure_future(send_all())
        # Observe that progress stops (a bounded wait: nothing is expected to happen).
        previous = -1
        while sent != previous:
            previous = sent
            await asyncio.sleep(0.2)
        assert 0 < sent < 32, sent  # 4 MiB windows + 256 KiB high water + 8 queued events
        release.set()
        await asyncio.wait_for(sender, 30)
        assert (await stream.recv_message()).value == 64
