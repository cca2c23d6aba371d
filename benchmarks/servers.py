"""Every benchmarked server, one per process: ``python servers.py KIND PORT``.

All of them serve ``benchhello.Greeter`` with the same behaviour (see
``benchhello/benchhello.proto``), so a row of RESULTS.md differs from another
only by the server stack:

* ``grpcasgi``            the bundled server (``grpcasgi.Server``), default asyncio loop
* ``grpcasgi-uvloop``     the same on uvloop (when uvloop is installed)
* ``grpcasgi-mw``         the bundled server with every built-in middleware found
* ``grpcasgi-hypercorn``  ``grpcasgi.asgi.App`` under Hypercorn (when ``grpcasgi/asgi.py`` exists)
* ``grpclib``             grpclib 0.4 ``Server``
* ``grpcio-aio``          grpcio's asyncio server
* ``grpcio-threads``      grpcio's thread-pool server
* ``bare-h2``             ceiling: asyncio + h2 answering a fixed reply, no gRPC logic
* ``bare-asgi``           ceiling: a fixed-reply ASGI app under Hypercorn

The process prints nothing on success; the harness polls the port and stops
it with SIGTERM. Handlers build each reply once per call (a streamed reply is
the same message object sent ``count`` times) so that every stack pays the
same protobuf cost and only the framework's per-message cost differs.
"""

from __future__ import annotations

import asyncio
import os
import signal
import struct
import sys
from typing import Any, AsyncIterator, Iterator

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from benchhello.benchhello_pb2 import HelloReply, HelloRequest  # noqa: E402

SERVICE = "benchhello.Greeter"
BARE_REPLY = HelloReply(message="Hello, world!").SerializeToString()
BARE_BODY = struct.pack(">?I", False, len(BARE_REPLY)) + BARE_REPLY


def _stream_reply(request: HelloRequest) -> HelloReply:
    return HelloReply(message=f"Hello, {request.name}!", payload=b"x" * request.size)


# --- grpcasgi ---------------------------------------------------------------


def grpcasgi_service() -> Any:
    from benchhello.benchhello_grpc import GreeterBase

    class Greeter(GreeterBase):
        async def SayHello(self, stream: Any) -> None:
            request = await stream.recv_message()
            await stream.send_message(HelloReply(message=f"Hello, {request.name}!"))

        async def SayHellos(self, stream: Any) -> None:
            request = await stream.recv_message()
            reply = _stream_reply(request)
            for _ in range(request.count):
                await stream.send_message(reply)

        async def CollectHellos(self, stream: Any) -> None:
            count = 0
            async for _ in stream:
                count += 1
            await stream.send_message(HelloReply(message=f"Hello, {count} names!", count=count))

        async def ChatHellos(self, stream: Any) -> None:
            async for request in stream:
                await stream.send_message(HelloReply(message=f"Hello, {request.name}!"))

    return Greeter()


def middleware_stack() -> tuple[list[Any], list[str]]:
    """Every built-in middleware this checkout has, configured as a service would.

    The middleware package is written alongside the benchmarks, so each layer
    is included when its module imports and the names of those included are
    reported (RESULTS.md says which). Every load generator sends
    ``authorization: Bearer bench`` (to every server alike), so the auth layer
    does real work; access logging is enabled at INFO into /dev/null so each
    call's record is really formatted and written.
    """
    import logging

    from grpcasgi.call import Middleware

    entries: list[Any] = []
    names: list[str] = []

    def add(module: str, cls_name: str, **options: Any) -> None:
        try:
            mod = __import__(f"grpcasgi.middleware.{module}", fromlist=[cls_name])
            cls = getattr(mod, cls_name)
        except (ImportError, AttributeError):
            return
        entries.append(Middleware(cls, **options))
        names.append(cls_name)

    handler = logging.StreamHandler(open(os.devnull, "w"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    access = logging.getLogger("grpcasgi.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False

    # Spans and metrics are really recorded when the OpenTelemetry SDK is
    # installed (a TracerProvider without exporter, an in-memory MeterProvider);
    # with the API alone they are the API's no-op objects.
    otel: dict[str, Any] = {}
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.trace import TracerProvider

        otel = {"tracer_provider": TracerProvider(), "meter_provider": MeterProvider()}
    except ImportError:
        pass
    add("logging", "LoggingMiddleware")
    if "tracer_provider" in otel:
        add("tracing", "ServerTracingMiddleware", tracer_provider=otel["tracer_provider"])
        add("metrics", "ServerMetricsMiddleware", meter_provider=otel["meter_provider"])
    else:
        add("tracing", "ServerTracingMiddleware")
        add("metrics", "ServerMetricsMiddleware")
    add("recovery", "ErrorMappingMiddleware")
    add("deadlines", "DeadlineMiddleware", default=30.0, maximum=300.0)
    try:
        from grpcasgi.middleware.auth import BearerTokenScheme

        add("auth", "AuthMiddleware", schemes=[BearerTokenScheme(tokens={"bench": "bench-user"})])
    except ImportError:
        pass
    add("limits", "ConcurrencyLimitMiddleware", max_in_flight=10000)
    add("validation", "ValidationMiddleware", validators={HelloRequest: lambda message: None})
    return entries, names


async def serve_grpcasgi(port: int, *, middleware: bool = False) -> None:
    from grpcasgi.server import Server

    entries: list[Any] = []
    if middleware:
        entries, names = middleware_stack()
        print("middleware: " + (", ".join(names) or "none"), file=sys.stderr, flush=True)
    server = Server([grpcasgi_service()], middleware=entries)
    await server.start("127.0.0.1", port)
    await _wait_for_signal()
    server.close()
    await server.wait_closed()


async def serve_grpcasgi_hypercorn(port: int) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    from grpcasgi.asgi import App  # type: ignore[import-not-found,unused-ignore]

    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.errorlog = None
    stop = asyncio.Event()
    _on_signal(stop.set)
    await serve(App([grpcasgi_service()]), config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]


# --- grpclib ------------------------------------------------------------------


async def serve_grpclib(port: int) -> None:
    import grpclib.const
    from grpclib.server import Server

    async def say_hello(stream: Any) -> None:
        request = await stream.recv_message()
        await stream.send_message(HelloReply(message=f"Hello, {request.name}!"))

    async def say_hellos(stream: Any) -> None:
        request = await stream.recv_message()
        reply = _stream_reply(request)
        for _ in range(request.count):
            await stream.send_message(reply)

    async def collect_hellos(stream: Any) -> None:
        count = 0
        while await stream.recv_message() is not None:
            count += 1
        await stream.send_message(HelloReply(message=f"Hello, {count} names!", count=count))

    async def chat_hellos(stream: Any) -> None:
        while (request := await stream.recv_message()) is not None:
            await stream.send_message(HelloReply(message=f"Hello, {request.name}!"))

    C = grpclib.const.Cardinality

    class Greeter:
        def __mapping__(self) -> dict[str, Any]:
            return {
                f"/{SERVICE}/SayHello": grpclib.const.Handler(say_hello, C.UNARY_UNARY, HelloRequest, HelloReply),
                f"/{SERVICE}/SayHellos": grpclib.const.Handler(say_hellos, C.UNARY_STREAM, HelloRequest, HelloReply),
                f"/{SERVICE}/CollectHellos": grpclib.const.Handler(
                    collect_hellos, C.STREAM_UNARY, HelloRequest, HelloReply
                ),
                f"/{SERVICE}/ChatHellos": grpclib.const.Handler(chat_hellos, C.STREAM_STREAM, HelloRequest, HelloReply),
            }

    server = Server([Greeter()])
    await server.start("127.0.0.1", port)
    await _wait_for_signal()
    server.close()
    await server.wait_closed()


# --- grpcio -------------------------------------------------------------------


def _grpcio_handler(asynchronous: bool) -> Any:
    import grpc

    if asynchronous:

        async def say_hello(request: HelloRequest, context: Any) -> HelloReply:
            return HelloReply(message=f"Hello, {request.name}!")

        async def say_hellos(request: HelloRequest, context: Any) -> AsyncIterator[HelloReply]:
            reply = _stream_reply(request)
            for _ in range(request.count):
                yield reply

        async def collect_hellos(requests: AsyncIterator[HelloRequest], context: Any) -> HelloReply:
            count = 0
            async for _ in requests:
                count += 1
            return HelloReply(message=f"Hello, {count} names!", count=count)

        async def chat_hellos(requests: AsyncIterator[HelloRequest], context: Any) -> AsyncIterator[HelloReply]:
            async for request in requests:
                yield HelloReply(message=f"Hello, {request.name}!")

        handlers: tuple[Any, ...] = (say_hello, say_hellos, collect_hellos, chat_hellos)
    else:

        def say_hello_sync(request: HelloRequest, context: Any) -> HelloReply:
            return HelloReply(message=f"Hello, {request.name}!")

        def say_hellos_sync(request: HelloRequest, context: Any) -> Iterator[HelloReply]:
            reply = _stream_reply(request)
            for _ in range(request.count):
                yield reply

        def collect_hellos_sync(requests: Iterator[HelloRequest], context: Any) -> HelloReply:
            count = sum(1 for _ in requests)
            return HelloReply(message=f"Hello, {count} names!", count=count)

        def chat_hellos_sync(requests: Iterator[HelloRequest], context: Any) -> Iterator[HelloReply]:
            for request in requests:
                yield HelloReply(message=f"Hello, {request.name}!")

        handlers = (say_hello_sync, say_hellos_sync, collect_hellos_sync, chat_hellos_sync)
    unary, server_stream, client_stream, bidi = handlers
    kw = {"request_deserializer": HelloRequest.FromString, "response_serializer": HelloReply.SerializeToString}
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "SayHello": grpc.unary_unary_rpc_method_handler(unary, **kw),
            "SayHellos": grpc.unary_stream_rpc_method_handler(server_stream, **kw),
            "CollectHellos": grpc.stream_unary_rpc_method_handler(client_stream, **kw),
            "ChatHellos": grpc.stream_stream_rpc_method_handler(bidi, **kw),
        },
    )


async def serve_grpcio_aio(port: int) -> None:
    import grpc

    server = grpc.aio.server()
    server.add_generic_rpc_handlers((_grpcio_handler(True),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await _wait_for_signal()
    await server.stop(None)


def serve_grpcio_threads(port: int) -> None:
    from concurrent import futures

    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((_grpcio_handler(False),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    signal.signal(signal.SIGTERM, lambda *_: server.stop(None))
    server.wait_for_termination()


# --- ceilings -------------------------------------------------------------------


async def serve_bare_h2(port: int) -> None:
    """The least an asyncio + h2 server can do per unary call: a fixed reply,
    headers/message/trailers written with one ``transport.write`` per batch."""
    import h2.config
    import h2.connection
    import h2.events

    config = h2.config.H2Configuration(
        client_side=False, header_encoding=None, validate_outbound_headers=False, normalize_outbound_headers=False
    )
    headers = [(b":status", b"200"), (b"content-type", b"application/grpc")]
    trailers = [(b"grpc-status", b"0")]

    class Bare(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.conn = h2.connection.H2Connection(config=config)
            self.conn.initiate_connection()
            transport.write(self.conn.data_to_send())

        def data_received(self, data: bytes) -> None:
            conn = self.conn
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    sid = event.stream_id
                    conn.send_headers(sid, headers)
                    conn.send_data(sid, BARE_BODY)
                    conn.send_headers(sid, trailers, end_stream=True)
            out = conn.data_to_send()
            if out:
                self.transport.write(out)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(Bare, "127.0.0.1", port)
    await _wait_for_signal()
    server.close()


async def serve_bare_asgi(port: int) -> None:
    """A fixed-reply ASGI app under Hypercorn: the cost of Hypercorn alone."""
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    start = {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"application/grpc")],
        "trailers": True,
    }
    body = {"type": "http.response.body", "body": BARE_BODY}
    end = {"type": "http.response.trailers", "headers": [(b"grpc-status", b"0")], "more_trailers": False}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while True:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        await send(start)
        await send(body)
        await send(end)

    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.errorlog = None
    stop = asyncio.Event()
    _on_signal(stop.set)
    await serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]


# --- plumbing ----------------------------------------------------------------------


def _on_signal(callback: Any) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, callback)


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    _on_signal(stop.set)
    await stop.wait()


ASYNC_SERVERS = {
    "grpcasgi": serve_grpcasgi,
    "grpcasgi-uvloop": serve_grpcasgi,
    "grpcasgi-mw": lambda port: serve_grpcasgi(port, middleware=True),
    "grpcasgi-hypercorn": serve_grpcasgi_hypercorn,
    "grpclib": serve_grpclib,
    "grpcio-aio": serve_grpcio_aio,
    "bare-h2": serve_bare_h2,
    "bare-asgi": serve_bare_asgi,
}


def main(argv: list[str]) -> None:
    kind, port = argv[0], int(argv[1])
    if kind == "grpcio-threads":
        serve_grpcio_threads(port)
        return
    if kind.endswith("-uvloop"):
        import uvloop

        uvloop.run(ASYNC_SERVERS[kind](port))
        return
    asyncio.run(ASYNC_SERVERS[kind](port))


if __name__ == "__main__":
    main(sys.argv[1:])
