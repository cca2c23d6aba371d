"""gRPC and a Starlette web app on one port, served by Hypercorn.

    cd examples/mount_with_starlette
    hypercorn --config python:grpcasgi.contrib.hypercorn_config --bind 127.0.0.1:8000 app:app

Requests with ``content-type: application/grpc*`` go to the grpcasgi ``App``,
everything else (and the lifespan) to Starlette. The web app's HTTP
middleware wraps only the web app: ``GZipMiddleware`` would compress gRPC
frames and ``BaseHTTPMiddleware`` cannot pass trailers through.

The same ``grpc_app`` also runs on the bundled server, without the web part:
``grpcasgi run app:grpc_app --port 50051``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from grpcasgi.asgi import App, mount_grpc
from grpcasgi.server import Stream

# The generated Greeter modules of the helloworld example.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "helloworld"))
from helloworld.helloworld_grpc import GreeterBase  # noqa: E402
from helloworld.helloworld_pb2 import HelloReply, HelloRequest  # noqa: E402

#: Shared by both sides of the port: the web app reports what gRPC served.
stats = {"greetings": 0, "started": False}


class Greeter(GreeterBase):
    async def SayHello(self, stream: Stream[HelloRequest, HelloReply]) -> None:
        request = await stream.recv_message()
        assert request is not None
        stats["greetings"] += 1
        await stream.send_message(HelloReply(message=f"Hello, {request.name}!"))

    async def SayHellos(self, stream: Stream[HelloRequest, HelloReply]) -> None:
        request = await stream.recv_message()
        assert request is not None
        for greeting in ("Hello", "Bonjour", "Hola"):
            stats["greetings"] += 1
            await stream.send_message(HelloReply(message=f"{greeting}, {request.name}!"))


def opened() -> None:
    """A startup hook: where a DB pool would be opened (once, in either runtime)."""
    stats["started"] = True


grpc_app = App([Greeter()], on_startup=[opened])


async def homepage(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"Hello from Starlette over HTTP/{request.scope['http_version']}\n")


async def greeting_stats(request: Request) -> JSONResponse:
    return JSONResponse(stats)


web_app = Starlette(
    routes=[Route("/", homepage), Route("/stats", greeting_stats)],
    middleware=[Middleware(GZipMiddleware, minimum_size=500)],
)

app = mount_grpc(grpc_app, web_app)
