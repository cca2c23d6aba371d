"""RequestIdMiddleware over a real loopback connection (grpcasgi Server + Channel)."""

from __future__ import annotations

from typing import Any, AsyncIterator

import pytest
from google.protobuf.wrappers_pb2 import StringValue

from grpcasgi import Cardinality, GRPCError, Handler, Middleware, Status
from grpcasgi.client import Channel
from grpcasgi.server import Server, Stream
from grpcasgi_request_id import RequestIdMiddleware, current_request_id


class Demo:
    def __mapping__(self) -> dict[str, Handler]:
        return {
            "/demo.Demo/Echo": Handler(self.Echo, Cardinality.UNARY_UNARY, StringValue, StringValue),
            "/demo.Demo/Fail": Handler(self.Fail, Cardinality.UNARY_UNARY, StringValue, StringValue),
        }

    async def Echo(self, stream: Stream[StringValue, StringValue]) -> None:
        await stream.recv_message()
        assert current_request_id.get() == stream.state["request_id"]
        await stream.send_message(StringValue(value=stream.state["request_id"]))

    async def Fail(self, stream: Stream[StringValue, StringValue]) -> None:
        raise GRPCError(Status.NOT_FOUND, "nothing here")


@pytest.fixture
async def channel() -> AsyncIterator[Channel]:
    server = Server([Demo()], middleware=[Middleware(RequestIdMiddleware)])
    await server.start("127.0.0.1", 0)
    async with Channel("127.0.0.1", server.port) as channel:
        yield channel
    server.close()
    await server.wait_closed()


async def call(channel: Channel, method: str, metadata: Any = None) -> tuple[Any, Any, Any]:
    stream = channel.request(f"/demo.Demo/{method}", Cardinality.UNARY_UNARY, StringValue, StringValue, metadata=metadata)
    reply: Any = None
    async with stream:
        await stream.send_message(StringValue(), end=True)
        try:
            reply = await stream.recv_message()
            await stream.recv_trailing_metadata()
        except GRPCError as err:
            reply = err
    return reply, stream.initial_metadata, stream.trailing_metadata


async def test_client_id_is_kept_and_returned(channel: Channel) -> None:
    reply, headers, _ = await call(channel, "Echo", {"x-request-id": "req-42"})
    assert reply.value == "req-42"
    assert headers["x-request-id"] == "req-42"


async def test_missing_or_unsafe_id_is_replaced(channel: Channel) -> None:
    reply, headers, _ = await call(channel, "Echo", {"x-request-id": "<script>"})
    assert reply.value != "<script>" and len(reply.value) == 32
    assert headers["x-request-id"] == reply.value


async def test_errors_carry_the_id_in_trailers(channel: Channel) -> None:
    error, _, trailers = await call(channel, "Fail", {"x-request-id": "req-7"})
    assert isinstance(error, GRPCError) and error.status is Status.NOT_FOUND
    assert trailers["x-request-id"] == "req-7"
