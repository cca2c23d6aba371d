"""Helpers for the middleware tests: a small service and a loopback server.

The service uses ``google.protobuf.wrappers_pb2`` messages and a hand-written
``__mapping__`` so the tests need no generated code. Every server listens on
127.0.0.1 port 0 and is closed by the fixture.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence

import pytest
from google.protobuf.wrappers_pb2 import Int32Value, StringValue

from grpcasgi import Cardinality, GRPCError, Handler, Middleware, Status
from grpcasgi.client import Channel, StreamUnaryMethod, UnaryStreamMethod, UnaryUnaryMethod
from grpcasgi.server import Server, Stream

SERVICE = "test.Echo"


class Echo:
    """A test service that records what its handlers saw.

    ``entered`` lists the methods whose handler started; ``seen`` collects
    values handlers captured (state, contextvars, deadlines); ``release``
    unblocks ``Wait``; ``waiting`` is set once ``Wait`` is blocked.
    """

    def __init__(self) -> None:
        self.entered: list[str] = []
        self.seen: dict[str, Any] = {}
        self.hooks: dict[str, Callable[[Stream[Any, Any]], Awaitable[None]]] = {}
        self.waiting = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled = asyncio.Event()

    def __mapping__(self) -> dict[str, Handler]:
        p = f"/{SERVICE}/"
        return {
            p + "Unary": Handler(self.Unary, Cardinality.UNARY_UNARY, StringValue, StringValue),
            p + "Count": Handler(self.Count, Cardinality.UNARY_STREAM, Int32Value, Int32Value),
            p + "Sum": Handler(self.Sum, Cardinality.STREAM_UNARY, Int32Value, Int32Value),
            p + "Fail": Handler(self.Fail, Cardinality.UNARY_UNARY, StringValue, StringValue),
            p + "Wait": Handler(self.Wait, Cardinality.UNARY_UNARY, StringValue, StringValue),
        }

    async def Unary(self, stream: Stream[StringValue, StringValue]) -> None:
        self.entered.append("Unary")
        hook = self.hooks.get("Unary")
        if hook is not None:
            await hook(stream)
            if stream.trailers_sent:
                return
        request = await stream.recv_message()
        assert request is not None
        await stream.send_message(StringValue(value=f"echo:{request.value}"))

    async def Count(self, stream: Stream[Int32Value, Int32Value]) -> None:
        self.entered.append("Count")
        request = await stream.recv_message()
        assert request is not None
        for i in range(request.value):
            await stream.send_message(Int32Value(value=i))

    async def Sum(self, stream: Stream[Int32Value, Int32Value]) -> None:
        self.entered.append("Sum")
        total = 0
        async for message in stream:
            total += message.value
        await stream.send_message(Int32Value(value=total))

    async def Fail(self, stream: Stream[StringValue, StringValue]) -> None:
        """Raise what the request names: ``grpc:<STATUS>``, ``key``, ``value``, ``runtime``."""
        self.entered.append("Fail")
        request = await stream.recv_message()
        assert request is not None
        kind = request.value
        if kind.startswith("grpc:"):
            raise GRPCError(Status[kind[5:]], "failed on purpose")
        if kind == "key":
            raise KeyError("secret-internal-key")
        if kind == "value":
            raise ValueError("secret internal detail")
        if kind == "lookup":
            raise IndexError("secret index")
        raise RuntimeError("secret runtime detail")

    async def Wait(self, stream: Stream[StringValue, StringValue]) -> None:
        self.entered.append("Wait")
        self.seen["wait_deadline"] = stream.deadline
        await stream.recv_message()
        self.waiting.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        await stream.send_message(StringValue(value="released"))


class Client:
    """Typed call helpers bound to one channel."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        p = f"/{SERVICE}/"
        self.Unary = UnaryUnaryMethod[StringValue, StringValue](channel, p + "Unary", StringValue, StringValue)
        self.Fail = UnaryUnaryMethod[StringValue, StringValue](channel, p + "Fail", StringValue, StringValue)
        self.Wait = UnaryUnaryMethod[StringValue, StringValue](channel, p + "Wait", StringValue, StringValue)
        self.Count = UnaryStreamMethod[Int32Value, Int32Value](channel, p + "Count", Int32Value, Int32Value)
        self.Sum = StreamUnaryMethod[Int32Value, Int32Value](channel, p + "Sum", Int32Value, Int32Value)
        self.Missing = UnaryUnaryMethod[StringValue, StringValue](
            channel, f"/{SERVICE}/Missing", StringValue, StringValue
        )

    async def unary(self, value: str = "hi", **kwargs: Any) -> str:
        reply = await self.Unary(StringValue(value=value), **kwargs)
        return reply.value


Serve = Callable[..., "contextlib.AbstractAsyncContextManager[tuple[Server, Client]]"]


@contextlib.asynccontextmanager
async def serve(
    middleware: Sequence[Middleware] = (),
    handlers: Sequence[Any] | None = None,
    **server_kwargs: Any,
) -> AsyncIterator[tuple[Server, Client]]:
    """Start a Server on 127.0.0.1:0 with ``middleware`` and yield it with a Client."""
    server = Server(handlers if handlers is not None else [Echo()], middleware=middleware, **server_kwargs)
    await server.start("127.0.0.1", 0)
    channel = Channel("127.0.0.1", server.port)
    try:
        yield server, Client(channel)
    finally:
        channel.close()
        server.close()
        await server.wait_closed()


async def expect_status(awaitable: Awaitable[Any], status: Status) -> GRPCError:
    with pytest.raises(GRPCError) as info:
        await awaitable
    assert info.value.status is status, info.value
    return info.value
