"""Helpers for the client-middleware tests: services built from plain functions
(``common_support.Service``, re-exported), recording middleware, and a capture
of the request headers the server received.

Everything runs over real loopback TCP connections (127.0.0.1, port 0).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from google.protobuf.wrappers_pb2 import Int32Value, StringValue

from common_support import Service as Service  # re-exported: the tests here import it from this module
from grpcasgi.const import Cardinality
from grpcasgi.types import ClientScope, Receive, Send, SendEvent

SV = StringValue
IV = Int32Value
UU = Cardinality.UNARY_UNARY
US = Cardinality.UNARY_STREAM
SU = Cardinality.STREAM_UNARY
SS = Cardinality.STREAM_STREAM


async def echo_unary(stream: Any) -> None:
    request = await stream.recv_message()
    await stream.send_message(SV(value=request.value))


async def echo_split(stream: Any) -> None:
    request = await stream.recv_message()
    for part in request.value.split(","):
        await stream.send_message(SV(value=part))


async def echo_join(stream: Any) -> None:
    parts = [m.value async for m in stream]
    await stream.send_message(SV(value=",".join(parts)))


async def echo_upper(stream: Any) -> None:
    async for m in stream:
        await stream.send_message(SV(value=m.value.upper()))


def echo_service(name: str = "t.Echo", **extra: Any) -> Service:
    return Service(name, Unary=(echo_unary, UU), Split=(echo_split, US), Join=(echo_join, SU), Upper=(echo_upper, SS), **extra)


class Recorder:
    """Client middleware appending ``(name, what, ...)`` tuples to a shared log."""

    def __init__(self, app: Any, *, name: str, log: list[Any], on_scope: Callable[[ClientScope], None] | None = None) -> None:
        self.app = app
        self.name = name
        self.log = log
        self.on_scope = on_scope

    async def __call__(self, scope: ClientScope, receive: Receive, send: Send) -> None:
        self.log.append((self.name, "call", scope["path"]))
        if self.on_scope is not None:
            self.on_scope(scope)

        async def recv() -> Any:
            event = await receive()
            self.log.append((self.name, event["type"]))
            return event

        async def snd(event: SendEvent) -> None:
            if event["type"] == "grpc.response.end":
                self.log.append((self.name, event["type"], event["status"]))
            else:
                self.log.append((self.name, event["type"]))
            await send(event)

        await self.app(scope, recv, snd)
        self.log.append((self.name, "return"))


HeaderLog = list[dict[bytes, bytes]]


def capture_request_headers(monkeypatch: Any) -> HeaderLog:
    """Record the raw headers of every request the bundled server parses (grpc-* included,
    which never reach application metadata)."""
    from grpcasgi.transport import h2server

    seen: HeaderLog = []
    original = h2server.parse_request

    def spy(method: Any, path: str, headers: Any) -> Any:
        headers = list(headers)
        seen.append(dict(headers))
        return original(method, path, headers)

    monkeypatch.setattr(h2server, "parse_request", spy)
    return seen


Handler_ = Callable[[Any], Awaitable[None]]
