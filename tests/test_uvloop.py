"""The bundled server and the client run on uvloop (the optional ``uvloop`` extra).

uvloop's transports implement ``asyncio.Transport`` without subclassing it;
the transports once asserted ``isinstance(transport, asyncio.Transport)`` and
every uvloop connection failed in ``connection_made``.
"""

from __future__ import annotations

import pytest
from google.protobuf.wrappers_pb2 import StringValue

from grpcasgi.client import Channel, UnaryStreamMethod, UnaryUnaryMethod
from grpcasgi.const import Cardinality, Handler
from grpcasgi.server import Server, Stream

uvloop = pytest.importorskip("uvloop")


class Echo:
    async def unary(self, stream: Stream[StringValue, StringValue]) -> None:
        request = await stream.recv_message()
        assert request is not None
        await stream.send_message(StringValue(value="echo:" + request.value))

    async def repeat(self, stream: Stream[StringValue, StringValue]) -> None:
        request = await stream.recv_message()
        assert request is not None
        for i in range(3):
            await stream.send_message(StringValue(value=f"{request.value}{i}"))

    def __mapping__(self) -> dict[str, Handler]:
        return {
            "/test.Echo/Unary": Handler(self.unary, Cardinality.UNARY_UNARY, StringValue, StringValue),
            "/test.Echo/Repeat": Handler(self.repeat, Cardinality.UNARY_STREAM, StringValue, StringValue),
        }


async def _round_trip() -> tuple[str, list[str]]:
    server = Server([Echo()])
    await server.start("127.0.0.1", 0)
    try:
        async with Channel("127.0.0.1", server.port) as channel:
            reply = await UnaryUnaryMethod(channel, "/test.Echo/Unary", StringValue, StringValue)(
                StringValue(value="hi"), timeout=5
            )
            replies = await UnaryStreamMethod(channel, "/test.Echo/Repeat", StringValue, StringValue)(
                StringValue(value="r"), timeout=5
            )
    finally:
        server.close()
        await server.wait_closed()
    return reply.value, [r.value for r in replies]


def test_server_and_client_on_uvloop() -> None:
    loop = uvloop.new_event_loop()
    try:
        unary, streamed = loop.run_until_complete(_round_trip())
    finally:
        loop.close()
    assert unary == "echo:hi"
    assert streamed == ["r0", "r1", "r2"]
