"""How to test a grpcasgi service with pytest — copy this file and adapt it.

Two ways, both through the real HTTP/2 client and server code:

* ``ChannelFor([services])`` — in-process, no socket: fast, nothing to clean up.
* the ``grpc_server`` / ``grpc_channel`` fixtures (installed with grpcasgi) —
  a real server on 127.0.0.1 and a free port, closed after the test.

Needs pytest-asyncio; the ``pytestmark`` line below makes the tests run in
its strict mode too (with ``asyncio_mode = "auto"`` it is not needed).
"""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.wrappers_pb2 import StringValue

from grpcasgi import GRPCError, Middleware, Status
from grpcasgi.testing import ChannelFor

from greeter import Greeter, GreeterStub, RequireToken

pytestmark = pytest.mark.asyncio

TOKENS = {"s3cret": "ann"}


async def test_say_hello_in_process() -> None:
    async with ChannelFor([Greeter()]) as channel:
        reply = await GreeterStub(channel).SayHello(StringValue(value="World"))
    assert reply.value == "Hello, World! (from anonymous)"


async def test_server_streaming_in_process() -> None:
    async with ChannelFor([Greeter()]) as channel:
        replies = await GreeterStub(channel).SayHellos(StringValue(value="Ann"))
    assert [r.value for r in replies] == ["Hello, Ann!", "Bonjour, Ann!", "Hola, Ann!"]


async def test_errors_are_grpc_errors() -> None:
    async with ChannelFor([Greeter()]) as channel:
        with pytest.raises(GRPCError) as info:
            await GreeterStub(channel).SayHello(StringValue(value=""))
    assert info.value.status is Status.INVALID_ARGUMENT
    assert info.value.message == "name must not be empty"


async def test_middleware_in_process() -> None:
    middleware = [Middleware(RequireToken, tokens=TOKENS)]
    async with ChannelFor([Greeter()], middleware=middleware) as channel:
        stub = GreeterStub(channel)
        with pytest.raises(GRPCError) as info:
            await stub.SayHello(StringValue(value="World"))
        assert info.value.status is Status.UNAUTHENTICATED
        reply = await stub.SayHello(StringValue(value="World"), metadata={"authorization": "Bearer s3cret"})
    assert reply.value == "Hello, World! (from ann)"


async def test_with_a_real_server(grpc_server: Any, grpc_channel: Any) -> None:
    server = await grpc_server([Greeter()], middleware=[Middleware(RequireToken, tokens=TOKENS)])
    stub = GreeterStub(grpc_channel(server))
    reply = await stub.SayHello(StringValue(value="World"), metadata={"authorization": "Bearer s3cret"}, timeout=5)
    assert reply.value == "Hello, World! (from ann)"
