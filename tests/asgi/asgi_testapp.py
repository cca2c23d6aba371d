"""The application the ASGI tests serve: one port, a Starlette web app and gRPC.

Hypercorn imports this module in a subprocess (``asgi_testapp:app``) and the
bundled-server tests import it in-process, so both runtimes run exactly the
same services and the same middleware list. Evidence that only the server
process can see (was a handler cancelled? what did the middleware record?) is
reported back through RPCs of the ``Probe`` methods.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from google.protobuf import empty_pb2, wrappers_pb2
from starlette.applications import Starlette
from starlette.middleware import Middleware as StarletteMiddleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

from grpcasgi import Cardinality, GRPCError, Handler, Middleware, Status
from grpcasgi.asgi import App, mount_grpc
from grpcasgi.config import Configuration
from grpcasgi.types import Receive, Scope, Send

SERVICE = "test.asgi.Echo"
S = wrappers_pb2.StringValue
B = wrappers_pb2.BytesValue
I32 = wrappers_pb2.Int32Value
E = empty_pb2.Empty

#: call id -> what the recording middleware saw.
RECORDS: dict[str, list[str]] = {}
#: key -> "started" | "cancelled" | "finished", set by Sleep.
SLEEPS: dict[str, str] = {}
_SLEEP_CHANGED: dict[str, asyncio.Event] = {}
#: Lifecycle hooks that ran in this process.
LIFECYCLE: list[str] = []


def _changed(key: str) -> asyncio.Event:
    return _SLEEP_CHANGED.setdefault(key, asyncio.Event())


class EchoService:
    """All four call shapes plus the probes the tests need."""

    async def unary(self, stream: Any) -> None:
        request = await stream.recv_message()
        who = stream.state.get("principal", "-")
        await stream.send_message(S(value=f"{request.value}|{who}|{stream.scope['runtime']}"))

    async def server_stream(self, stream: Any) -> None:
        request = await stream.recv_message()
        for i in range(request.value):
            await stream.send_message(I32(value=i))

    async def client_stream(self, stream: Any) -> None:
        parts = [message.value async for message in stream]
        await stream.send_message(S(value=",".join(parts)))

    async def bidi(self, stream: Any) -> None:
        async for message in stream:
            await stream.send_message(S(value=message.value.upper()))

    async def big(self, stream: Any) -> None:
        request = await stream.recv_message()
        await stream.send_message(B(value=request.value[::-1]))

    async def no_read(self, stream: Any) -> None:
        """Never reads its request; ends when the client cancels or the deadline passes."""
        await stream.send_initial_metadata()
        await asyncio.Event().wait()

    async def sleep(self, stream: Any) -> None:
        request = await stream.recv_message()
        key = request.value
        SLEEPS[key] = "started"
        _changed(key).set()
        await stream.send_initial_metadata()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            SLEEPS[key] = "cancelled"
            _changed(key).set()
            raise
        SLEEPS[key] = "finished"
        await stream.send_message(E())

    async def sleep_state(self, stream: Any) -> None:
        """The Sleep state of a key once it is no longer "started" (5 s safety limit)."""
        request = await stream.recv_message()
        key = request.value
        loop = asyncio.get_running_loop()
        end = loop.time() + 5
        while SLEEPS.get(key) in (None, "started") and loop.time() < end:
            event = _changed(key)
            event.clear()
            try:
                await asyncio.wait_for(event.wait(), end - loop.time())
            except asyncio.TimeoutError:
                break
        await stream.send_message(S(value=SLEEPS.get(key, "unknown")))

    async def records(self, stream: Any) -> None:
        request = await stream.recv_message()
        await stream.send_message(S(value=json.dumps(RECORDS.get(request.value, []))))

    async def lifecycle(self, stream: Any) -> None:
        await stream.recv_message()
        await stream.send_message(S(value=",".join(LIFECYCLE)))

    async def fail(self, stream: Any) -> None:
        await stream.recv_message()
        raise GRPCError(Status.FAILED_PRECONDITION, "nope", None)

    def __mapping__(self) -> dict[str, Handler]:
        u, us, su, ss = (
            Cardinality.UNARY_UNARY,
            Cardinality.UNARY_STREAM,
            Cardinality.STREAM_UNARY,
            Cardinality.STREAM_STREAM,
        )
        p = f"/{SERVICE}/"
        return {
            p + "Unary": Handler(self.unary, u, S, S),
            p + "ServerStream": Handler(self.server_stream, us, I32, I32),
            p + "ClientStream": Handler(self.client_stream, su, S, S),
            p + "Bidi": Handler(self.bidi, ss, S, S),
            p + "Big": Handler(self.big, u, B, B),
            p + "NoRead": Handler(self.no_read, su, B, E),
            p + "Sleep": Handler(self.sleep, u, S, E),
            p + "SleepState": Handler(self.sleep_state, u, S, S),
            p + "Records": Handler(self.records, u, S, S),
            p + "Lifecycle": Handler(self.lifecycle, u, E, S),
            p + "Fail": Handler(self.fail, u, E, E),
        }


PUBLIC = {"Records", "SleepState", "Lifecycle", "NoRead", "Sleep", "Big", "ServerStream", "ClientStream", "Bidi"}


class RecordingAuth:
    """An auth-like middleware that records what it sees, per ``x-call-id``.

    Methods outside ``PUBLIC`` need ``authorization: Bearer good``; the
    principal goes into ``scope["state"]``. Every event passing through is
    recorded, so the tests can compare the two runtimes event by event.
    """

    def __init__(self, app: Any, *, tag: str) -> None:
        self.app = app
        self.tag = tag

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        call_id = str(scope["metadata"].get("x-call-id", ""))
        record = RECORDS.setdefault(call_id, []) if call_id else []
        record.append(f"{self.tag}:scope:{scope['service']}/{scope['method']}:{scope['cardinality']}")
        if scope["method"] not in PUBLIC:
            if scope["metadata"].get("authorization") != "Bearer good":
                record.append(f"{self.tag}:denied")
                await send({"type": "grpc.response.end", "status": Status.UNAUTHENTICATED, "message": "bad token"})
                return
            scope["state"]["principal"] = "alice"

        async def recording_receive() -> Any:
            event = await receive()
            record.append(f"{self.tag}:recv:{event['type']}")
            return event

        async def recording_send(event: Any) -> None:
            status = event.get("status")
            record.append(f"{self.tag}:send:{event['type']}" + (f":{status.name}" if status is not None else ""))
            await send(event)

        try:
            await self.app(scope, recording_receive, recording_send)
        except BaseException as exc:
            record.append(f"{self.tag}:raised:{type(exc).__name__}")
            raise


MIDDLEWARE = [Middleware(RecordingAuth, tag="outer"), Middleware(RecordingAuth, tag="inner")]
CONFIG = Configuration(max_receive_message_length=8 * 1024 * 1024)


async def _startup() -> None:
    LIFECYCLE.append("startup")


def _shutdown() -> None:
    LIFECYCLE.append("shutdown")


grpc_app = App([EchoService()], middleware=MIDDLEWARE, config=CONFIG, on_startup=[_startup], on_shutdown=[_shutdown])


# -- the web side -------------------------------------------------------------


async def hello(request: Request) -> Response:
    return PlainTextResponse(f"hello over HTTP/{request.scope['http_version']}" + " " * 600)


class TagResponses(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers["x-web-middleware"] = "yes"
        return response


web_app = Starlette(
    routes=[Route("/hello", hello)],
    middleware=[StarletteMiddleware(TagResponses), StarletteMiddleware(GZipMiddleware, minimum_size=100)],
)

#: gRPC by content type beside the web app, whose HTTP middleware never sees gRPC.
app = mount_grpc(grpc_app, web_app)

#: The other way to combine them: Starlette routes the service path to the gRPC app.
#: Starlette does not forward lifespan events to mounted apps, hence lifespan_context.
mounted_app = Starlette(
    routes=[Mount(f"/{SERVICE}", app=grpc_app), Route("/hello", hello)], lifespan=grpc_app.lifespan_context
)
