"""ChannelFor: calls in-process, through the real client and server HTTP/2 stacks."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import pytest
from google.protobuf.wrappers_pb2 import BytesValue, Int64Value, StringValue

from grpcasgi import Cardinality, Configuration, GRPCError, Handler, Middleware, Status
from grpcasgi.client import (
    Channel,
    StreamStreamMethod,
    StreamUnaryMethod,
    UnaryStreamMethod,
    UnaryUnaryMethod,
)
from grpcasgi.server import Stream
from grpcasgi.testing import ChannelFor
from grpcasgi.types import Receive, Scope, Send

SMALL_WINDOWS = Configuration(http2_stream_window_size=65535, http2_connection_window_size=65535)


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll a condition of the connection state (bounded; a safety net, not a delay)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.001)


class Svc:
    """One method per cardinality plus a few for errors, deadlines and flow control."""

    def __init__(self) -> None:
        self.started = 0
        self.closed = 0
        self.release = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.sleeping = asyncio.Event()
        self.peer: Any = None
        self.sent = 0

    async def __on_start__(self) -> None:
        self.started += 1

    def __on_close__(self) -> None:
        self.closed += 1

    async def Unary(self, stream: Stream[StringValue, StringValue]) -> None:
        request = await stream.recv_message()
        assert request is not None
        self.peer = stream.peer.addr()
        user = stream.state.get("user", "")
        await stream.send_initial_metadata(metadata={"x-echo": stream.metadata.get("x-in", "")})
        await stream.send_message(StringValue(value=f"{request.value}{user}"))
        await stream.send_trailing_metadata(metadata={"x-trailer": "t"})

    async def ServerStream(self, stream: Stream[Int64Value, Int64Value]) -> None:
        request = await stream.recv_message()
        assert request is not None
        for i in range(request.value):
            await stream.send_message(Int64Value(value=i))

    async def ClientStream(self, stream: Stream[Int64Value, Int64Value]) -> None:
        total = 0
        async for message in stream:
            total += message.value
        await stream.send_message(Int64Value(value=total))

    async def Bidi(self, stream: Stream[StringValue, StringValue]) -> None:
        async for message in stream:
            await stream.send_message(StringValue(value=message.value.upper()))

    async def Fail(self, stream: Stream[StringValue, StringValue]) -> None:
        request = await stream.recv_message()
        assert request is not None
        if request.value == "crash":
            raise RuntimeError("boom")
        raise GRPCError(Status.FAILED_PRECONDITION, "not now", None)

    async def Sleep(self, stream: Stream[StringValue, StringValue]) -> None:
        await stream.recv_message()
        self.sleeping.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        await stream.send_message(StringValue(value="woke"))

    async def Sink(self, stream: Stream[BytesValue, Int64Value]) -> None:
        """Reads nothing until released, then counts the bytes it was sent."""
        await self.release.wait()
        total = 0
        async for message in stream:
            total += len(message.value)
        await stream.send_message(Int64Value(value=total))

    async def Flood(self, stream: Stream[Int64Value, BytesValue]) -> None:
        """Sends ``value`` messages of 64 KiB; counts how many got past send_message."""
        request = await stream.recv_message()
        assert request is not None
        chunk = BytesValue(value=b"x" * 65536)
        for _ in range(request.value):
            await stream.send_message(chunk)
            self.sent += 1

    async def Ignore(self, stream: Stream[BytesValue, Int64Value]) -> None:
        """Replies without reading the request."""
        await stream.send_message(Int64Value(value=0))

    async def Echo(self, stream: Stream[BytesValue, BytesValue]) -> None:
        request = await stream.recv_message()
        assert request is not None
        await stream.send_message(request)

    def __mapping__(self) -> dict[str, Handler]:
        return {
            "/t.Svc/Ignore": Handler(self.Ignore, Cardinality.UNARY_UNARY, BytesValue, Int64Value),
            "/t.Svc/Echo": Handler(self.Echo, Cardinality.UNARY_UNARY, BytesValue, BytesValue),
            "/t.Svc/Unary": Handler(self.Unary, Cardinality.UNARY_UNARY, StringValue, StringValue),
            "/t.Svc/ServerStream": Handler(self.ServerStream, Cardinality.UNARY_STREAM, Int64Value, Int64Value),
            "/t.Svc/ClientStream": Handler(self.ClientStream, Cardinality.STREAM_UNARY, Int64Value, Int64Value),
            "/t.Svc/Bidi": Handler(self.Bidi, Cardinality.STREAM_STREAM, StringValue, StringValue),
            "/t.Svc/Fail": Handler(self.Fail, Cardinality.UNARY_UNARY, StringValue, StringValue),
            "/t.Svc/Sleep": Handler(self.Sleep, Cardinality.UNARY_UNARY, StringValue, StringValue),
            "/t.Svc/Sink": Handler(self.Sink, Cardinality.STREAM_UNARY, BytesValue, Int64Value),
            "/t.Svc/Flood": Handler(self.Flood, Cardinality.UNARY_STREAM, Int64Value, BytesValue),
        }


def unary(channel: Channel, name: str = "Unary") -> UnaryUnaryMethod[StringValue, StringValue]:
    return UnaryUnaryMethod(channel, f"/t.Svc/{name}", StringValue, StringValue)


async def test_unary_with_metadata_and_hooks() -> None:
    svc = Svc()
    async with ChannelFor([svc]) as channel:
        assert svc.started == 1
        async with unary(channel).open(metadata={"x-in": "hello"}) as stream:
            await stream.send_message(StringValue(value="ping"), end=True)
            reply = await stream.recv_message()
            await stream.recv_trailing_metadata()
        assert reply == StringValue(value="ping")
        assert stream.initial_metadata is not None and stream.initial_metadata["x-echo"] == "hello"
        assert stream.trailing_metadata is not None and stream.trailing_metadata["x-trailer"] == "t"
        assert stream.peer is not None and stream.peer.addr() == ("in-process-server", 0)
        assert svc.peer == ("in-process-client", 0)
        assert svc.closed == 0
    assert svc.closed == 1


async def test_all_four_cardinalities() -> None:
    async with ChannelFor([Svc()]) as channel:
        assert (await unary(channel)(StringValue(value="a"))).value == "a"
        replies = await UnaryStreamMethod(channel, "/t.Svc/ServerStream", Int64Value, Int64Value)(Int64Value(value=5))
        assert [r.value for r in replies] == [0, 1, 2, 3, 4]
        total = await StreamUnaryMethod(channel, "/t.Svc/ClientStream", Int64Value, Int64Value)(
            [Int64Value(value=i) for i in range(1, 11)]
        )
        assert total.value == 55
        bidi = StreamStreamMethod(channel, "/t.Svc/Bidi", StringValue, StringValue)
        async with bidi.open() as stream:
            await stream.send_request()
            for word in ("ping", "pong"):
                await stream.send_message(StringValue(value=word))
                reply = await stream.recv_message()
                assert reply is not None and reply.value == word.upper()
            await stream.end()
            assert await stream.recv_message() is None


async def test_concurrent_calls_share_one_connection() -> None:
    cf = ChannelFor([Svc()])
    async with cf as channel:
        replies = await asyncio.gather(*(unary(channel)(StringValue(value=str(i))) for i in range(50)))
        assert [r.value for r in replies] == [str(i) for i in range(50)]
    assert len(cf.connections) == 1


async def test_errors() -> None:
    async with ChannelFor([Svc()]) as channel:
        with pytest.raises(GRPCError) as info:
            await unary(channel, "Fail")(StringValue(value="x"))
        assert (info.value.status, info.value.message) == (Status.FAILED_PRECONDITION, "not now")
        with pytest.raises(GRPCError) as info:
            await unary(channel, "Fail")(StringValue(value="crash"))
        assert (info.value.status, info.value.message) == (Status.UNKNOWN, "Internal Server Error")
        with pytest.raises(GRPCError) as info:
            await unary(channel, "Missing")(StringValue(value="x"))
        assert info.value.status is Status.UNIMPLEMENTED


async def test_deadline_cancels_the_handler() -> None:
    svc = Svc()
    async with ChannelFor([svc]) as channel:
        call = asyncio.ensure_future(unary(channel, "Sleep")(StringValue(value="x"), timeout=0.3))
        await asyncio.wait_for(svc.sleeping.wait(), 5)
        with pytest.raises(GRPCError) as info:
            await call
        assert info.value.status is Status.DEADLINE_EXCEEDED
        await asyncio.wait_for(svc.cancelled.wait(), 5)


async def test_leaving_cancels_running_calls() -> None:
    svc = Svc()
    async with ChannelFor([svc]) as channel:
        call = asyncio.ensure_future(unary(channel, "Sleep")(StringValue(value="x")))
        await asyncio.wait_for(svc.sleeping.wait(), 5)
    await asyncio.wait_for(svc.cancelled.wait(), 5)
    with pytest.raises(GRPCError) as info:
        await call
    assert info.value.status is Status.UNAVAILABLE


class Suffix:
    """Server middleware: appends to the state the handler reads."""

    def __init__(self, app: Any, *, suffix: str) -> None:
        self.app = app
        self.suffix = suffix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["state"]["user"] = scope["state"].get("user", "") + self.suffix
        await self.app(scope, receive, send)


async def test_server_middleware_runs_in_order() -> None:
    middleware = [Middleware(Suffix, suffix="-outer"), Middleware(Suffix, suffix="-inner")]
    async with ChannelFor([Svc()], middleware=middleware) as channel:
        reply = await unary(channel)(StringValue(value="me"))
    assert reply.value == "me-outer-inner"


class AddMetadata:
    """Client middleware: adds ``x-in`` to every call's metadata."""

    def __init__(self, app: Any, *, value: str) -> None:
        self.app = app
        self.value = value

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        scope["metadata"]["x-in"] = self.value
        await self.app(scope, receive, send)


async def test_client_middleware_passed_to_the_channel() -> None:
    async with ChannelFor([Svc()], client_middleware=[Middleware(AddMetadata, value="from-mw")]) as channel:
        assert [m.cls for m in channel.middleware] == [AddMetadata]
        async with unary(channel).open() as stream:
            await stream.send_message(StringValue(value="a"), end=True)
            reply = await stream.recv_message()
            await stream.recv_trailing_metadata()
    assert reply is not None and reply.value == "a"
    assert stream.initial_metadata is not None and stream.initial_metadata["x-echo"] == "from-mw"


async def test_reconnects_after_the_connection_is_lost() -> None:
    cf = ChannelFor([Svc()])
    async with cf as channel:
        assert (await unary(channel)(StringValue(value="1"))).value == "1"
        first = cf.connections[0]
        assert first.transport is not None
        first.transport.abort()
        await asyncio.wait_for(asyncio.shield(first.closed), 5)
        assert (await unary(channel)(StringValue(value="2"))).value == "2"
    assert len(cf.connections) == 2


async def test_request_flow_control_blocks_the_sender() -> None:
    """A handler that does not read stops the client: the window is never acknowledged."""
    svc = Svc()
    total = 64 * 65536  # 4 MiB, far more than the 64 KiB window + the 256 KiB send queue
    sent = 0
    cf = ChannelFor([svc], config=SMALL_WINDOWS)
    async with cf as channel:
        method = StreamUnaryMethod(channel, "/t.Svc/Sink", BytesValue, Int64Value)
        async with method.open() as stream:

            async def send_all() -> None:
                nonlocal sent
                await stream.send_request()
                for _ in range(total // 65536):
                    await stream.send_message(BytesValue(value=b"y" * 65536))
                    sent += 65536
                await stream.end()

            sender = asyncio.ensure_future(send_all())

            def server_calls() -> list[Any]:
                return [call for conn in cf.connections for call in conn.calls.values()]

            def stalled() -> bool:
                h2 = stream._h2
                return (
                    h2 is not None
                    and h2.writer._drain is not None  # the sender waits for its queue to drain...
                    and h2.proto.conn.local_flow_control_window(h2.stream_id) == 0  # ...as the window is used up
                    and len(server_calls()) == 1
                )

            await wait_until(stalled)
            assert not sender.done()
            assert sent < total // 8
            # The server holds no more than the stream window it granted.
            (server_call,) = server_calls()
            assert server_call._decoder.buffered <= 65535
            svc.release.set()
            await asyncio.wait_for(sender, 10)
            reply = await stream.recv_message()
            await stream.recv_trailing_metadata()
    assert sent == total
    assert reply is not None and reply.value == total


async def test_response_flow_control_blocks_the_handler() -> None:
    """A client that does not read stops the handler's send_message."""
    svc = Svc()
    count = 64
    cf = ChannelFor([svc], config=SMALL_WINDOWS)
    async with cf as channel:
        method = UnaryStreamMethod(channel, "/t.Svc/Flood", Int64Value, BytesValue)
        async with method.open() as stream:
            await stream.send_message(Int64Value(value=count), end=True)

            def handler_blocked() -> bool:
                calls = [call for conn in cf.connections for call in conn.calls.values()]
                return bool(calls) and calls[0].writer._drain is not None

            await wait_until(handler_blocked)
            assert svc.sent < count // 4
            h2 = stream._h2
            assert h2 is not None
            assert h2.decoder.buffered <= 65535  # the client holds at most its window
            received = 0
            async for message in stream:
                received += len(message.value)
    assert received == count * 65536
    assert svc.sent == count


@pytest.mark.parametrize(
    "config, size",
    [
        (SMALL_WINDOWS, 300_000),
        # Default windows equal the default message limit: a message of exactly
        # the limit plus its 5-byte prefix is larger than the window.
        (Configuration(), Configuration().max_receive_message_length - 8),
    ],
    ids=["small-windows", "limit-sized"],
)
async def test_messages_larger_than_the_window(config: Configuration, size: int) -> None:
    """Credit for a message in progress is given early when it could not complete otherwise."""
    async with ChannelFor([Svc()], config=config) as channel:
        method = UnaryUnaryMethod(channel, "/t.Svc/Echo", BytesValue, BytesValue)
        payload = bytes(range(256)) * (size // 256)
        reply = await asyncio.wait_for(method(BytesValue(value=payload)), 10)
    assert reply.value == payload


def credit_returned(conn: Any) -> Callable[[], bool]:
    """True once the peer gave back the connection window a sender on ``conn`` used.

    Receivers batch their WINDOW_UPDATEs (at about half a window), so "given
    back" means at least half the window is available again; credit leaked by
    the earlier calls would leave far less.
    """
    return lambda: bool(conn.outbound_flow_control_window >= 65535 // 2)


async def test_abandoned_response_returns_connection_credit() -> None:
    """Data the client never read must not keep the connection window."""
    svc = Svc()
    cf = ChannelFor([svc], config=SMALL_WINDOWS)
    async with cf as channel:
        flood = UnaryStreamMethod(channel, "/t.Svc/Flood", Int64Value, BytesValue)
        for _ in range(3):
            async with flood.open() as stream:
                await stream.send_message(Int64Value(value=64), end=True)
                assert await stream.recv_message() is not None
                await stream.cancel()
        replies = await asyncio.wait_for(flood(Int64Value(value=4)), 10)
        assert len(replies) == 4
        (conn,) = cf.connections
        await wait_until(credit_returned(conn.conn))


async def test_unread_request_returns_connection_credit() -> None:
    """A request the handler never read must not keep the connection window."""
    cf = ChannelFor([Svc()], config=SMALL_WINDOWS)
    async with cf as channel:
        ignore = UnaryUnaryMethod(channel, "/t.Svc/Ignore", BytesValue, Int64Value)
        for _ in range(3):
            await asyncio.wait_for(ignore(BytesValue(value=b"z" * 40_000)), 10)
            assert channel._protocol is not None
            await wait_until(credit_returned(channel._protocol.conn))
