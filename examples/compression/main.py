"""Compression, end to end in one process: run ``python examples/compression/main.py``.

Shows the three places compression is decided (see docs/compression.md):

1. the client: ``Channel(compression="gzip")`` or per call ``compression=``;
   the server then answers in the same encoding;
2. a handler: ``stream.set_compression("gzip")`` for its replies, and
   ``send_message(..., compress=False)`` for a message not worth compressing;
3. server-wide policy as middleware: ``CompressReplies`` below compresses every
   response of the methods it is given, by setting ``"compression"`` on the
   ``grpc.response.start`` event — no handler changes.

Prints what arrived compressed and exits 0.
"""

from __future__ import annotations

import asyncio
from typing import Any

from google.protobuf.wrappers_pb2 import BytesValue, StringValue

from grpcasgi import Cardinality, Handler, Middleware
from grpcasgi.client import Channel
from grpcasgi.server import Server, Stream
from grpcasgi.types import Receive, Scope, Send, SendEvent

REPORT = "/example.Reports/Get"
ECHO = "/example.Reports/Echo"
STREAM = "/example.Reports/Stream"


class Reports:
    async def Get(self, stream: Stream[StringValue, BytesValue]) -> None:
        request = await stream.recv_message()
        assert request is not None
        await stream.send_message(BytesValue(value=f"report {request.value}\n".encode() * 2000))

    async def Echo(self, stream: Stream[StringValue, BytesValue]) -> None:
        request = await stream.recv_message()
        assert request is not None
        await stream.send_message(BytesValue(value=request.value.encode() * 5000))

    async def Stream(self, stream: Stream[StringValue, BytesValue]) -> None:
        await stream.recv_message()
        stream.set_compression("gzip")
        await stream.send_message(BytesValue(value=b"highly compressible " * 1000))
        # Already-compressed data (an image, a zip) gains nothing from gzip.
        await stream.send_message(BytesValue(value=bytes(range(256)) * 4), compress=False)

    def __mapping__(self) -> dict[str, Handler]:
        return {
            REPORT: Handler(self.Get, Cardinality.UNARY_UNARY, StringValue, BytesValue),
            ECHO: Handler(self.Echo, Cardinality.UNARY_UNARY, StringValue, BytesValue),
            STREAM: Handler(self.Stream, Cardinality.UNARY_STREAM, StringValue, BytesValue),
        }


class CompressReplies:
    """Middleware: answer the given methods in ``encoding`` when the client accepts it.

    Calls whose request was compressed keep the default (answer in kind).
    """

    def __init__(self, app: Any, *, methods: set[str], encoding: str = "gzip") -> None:
        self.app = app
        self.methods = methods
        self.encoding = encoding

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] not in self.methods or scope["encoding"] is not None:
            await self.app(scope, receive, send)
            return

        async def compressing_send(event: SendEvent) -> None:
            if event["type"] == "grpc.response.start":
                event.setdefault("compression", self.encoding)  # type: ignore[typeddict-item]
            await send(event)

        await self.app(scope, receive, compressing_send)


async def call(channel: Channel, path: str, **kwargs: Any) -> list[tuple[int, bool | None]]:
    """(size, arrived compressed?) of each reply."""
    cardinality = Cardinality.UNARY_STREAM if path == STREAM else Cardinality.UNARY_UNARY
    out = []
    async with channel.request(path, cardinality, StringValue, BytesValue, timeout=10, **kwargs) as stream:
        await stream.send_message(StringValue(value="q3"), end=True)
        async for reply in stream:
            out.append((len(reply.value), stream.last_message_compressed))
    return out


async def main() -> None:
    server = Server([Reports()], middleware=[Middleware(CompressReplies, methods={REPORT})])
    await server.start("127.0.0.1", 0)
    try:
        async with Channel("127.0.0.1", server.port) as plain, Channel("127.0.0.1", server.port, compression="deflate") as deflate:
            print("nobody asks for compression:      ", await call(plain, ECHO))
            print("the client compresses (deflate):  ", await call(deflate, ECHO))
            print("per call, identity on that channel:", await call(deflate, ECHO, compression="identity"))
            print("server policy as middleware (gzip):", await call(plain, REPORT))
            print("the handler decides per message:  ", await call(plain, STREAM))
    finally:
        server.close()
        await server.wait_closed()


if __name__ == "__main__":
    asyncio.run(main())
