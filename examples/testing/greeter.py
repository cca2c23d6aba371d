"""A tiny service to show how grpcasgi services are tested (see test_example.py).

It is written without generated code (``google.protobuf`` wrapper messages
and a hand-written ``__mapping__``) so the example is self-contained; a
generated ``<Service>Base`` subclass and ``<Service>Stub`` are used the same way.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.wrappers_pb2 import StringValue

from grpcasgi import Cardinality, GRPCError, Handler, Status
from grpcasgi.client import Channel, UnaryStreamMethod, UnaryUnaryMethod
from grpcasgi.server import Stream
from grpcasgi.types import Receive, Scope, Send


class Greeter:
    async def SayHello(self, stream: Stream[StringValue, StringValue]) -> None:
        request = await stream.recv_message()
        assert request is not None
        if not request.value:
            raise GRPCError(Status.INVALID_ARGUMENT, "name must not be empty")
        user = stream.state.get("user", "anonymous")
        await stream.send_message(StringValue(value=f"Hello, {request.value}! (from {user})"))

    async def SayHellos(self, stream: Stream[StringValue, StringValue]) -> None:
        request = await stream.recv_message()
        assert request is not None
        for greeting in ("Hello", "Bonjour", "Hola"):
            await stream.send_message(StringValue(value=f"{greeting}, {request.value}!"))

    def __mapping__(self) -> dict[str, Handler]:
        return {
            "/example.Greeter/SayHello": Handler(self.SayHello, Cardinality.UNARY_UNARY, StringValue, StringValue),
            "/example.Greeter/SayHellos": Handler(self.SayHellos, Cardinality.UNARY_STREAM, StringValue, StringValue),
        }


class GreeterStub:
    def __init__(self, channel: Channel) -> None:
        self.SayHello = UnaryUnaryMethod[StringValue, StringValue](
            channel, "/example.Greeter/SayHello", StringValue, StringValue
        )
        self.SayHellos = UnaryStreamMethod[StringValue, StringValue](
            channel, "/example.Greeter/SayHellos", StringValue, StringValue
        )


class RequireToken:
    """Middleware: reject calls without ``authorization: Bearer <token>``; record the user."""

    def __init__(self, app: Any, *, tokens: dict[str, str]) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        auth = scope["metadata"].get("authorization", "")
        user = self.tokens.get(auth.removeprefix("Bearer ")) if isinstance(auth, str) else None
        if user is None:
            await send({"type": "grpc.response.end", "status": Status.UNAUTHENTICATED, "message": "bad token"})
            return
        scope["state"]["user"] = user
        await self.app(scope, receive, send)
