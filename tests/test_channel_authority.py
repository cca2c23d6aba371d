"""``Channel(authority=...)`` overrides the ``:authority`` every request carries."""

from __future__ import annotations

from typing import Any

from google.protobuf import wrappers_pb2

from grpcasgi.client import Channel, UnaryUnaryMethod
from grpcasgi.const import Cardinality, Handler
from grpcasgi.server import Server


class AuthorityEcho:
    async def Authority(self, stream: Any) -> None:
        await stream.recv_message()
        await stream.send_message(wrappers_pb2.StringValue(value=stream.scope["authority"]))

    def __mapping__(self) -> dict[str, Handler]:
        return {
            "/t.A/Authority": Handler(
                self.Authority, Cardinality.UNARY_UNARY, wrappers_pb2.StringValue, wrappers_pb2.StringValue
            )
        }


async def test_default_and_overridden_authority() -> None:
    async with Server([AuthorityEcho()]) as server:
        await server.start("127.0.0.1", 0)
        async with Channel("127.0.0.1", server.port) as channel:
            call = UnaryUnaryMethod(channel, "/t.A/Authority", wrappers_pb2.StringValue, wrappers_pb2.StringValue)
            assert (await call(wrappers_pb2.StringValue())).value == f"127.0.0.1:{server.port}"
        async with Channel("127.0.0.1", server.port, authority="api.example.test:443") as channel:
            call = UnaryUnaryMethod(channel, "/t.A/Authority", wrappers_pb2.StringValue, wrappers_pb2.StringValue)
            assert (await call(wrappers_pb2.StringValue())).value == "api.example.test:443"
