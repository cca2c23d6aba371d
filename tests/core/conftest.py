"""Fixtures for the core server/client tests: a configurable service, servers and
channels on real loopback sockets, and a check that no test leaks a task.

Everything here drives the public API (``Server``, ``Channel``) over TCP on
127.0.0.1 with port 0; nothing talks to the transport objects directly.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest

from common_support import no_task_leaks
from core_helpers import echo_service
from grpcasgi.client import Channel
from grpcasgi.config import Configuration
from grpcasgi.server import Server

ServerFactory = Callable[..., Awaitable[Server]]


@pytest.fixture
async def start_server() -> AsyncIterator[ServerFactory]:
    """``await start_server(services, config=..., **start_kwargs)`` → a started Server, closed at teardown."""
    servers: list[Server] = []

    async def factory(handlers: Any = None, *, config: Configuration | None = None, **kwargs: Any) -> Server:
        server_kwargs = {k: kwargs.pop(k) for k in ("middleware", "codec", "status_details_codec") if k in kwargs}
        server = Server(handlers if handlers is not None else [echo_service()], config=config, **server_kwargs)
        if "path" not in kwargs and "sock" not in kwargs:
            kwargs.setdefault("host", "127.0.0.1")
            kwargs.setdefault("port", 0)
        await server.start(**kwargs)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.close()
    for server in servers:
        await asyncio.wait_for(server.wait_closed(), 5)


@pytest.fixture
async def server(start_server: ServerFactory) -> Server:
    """A started server with the echo service."""
    return await start_server()


@pytest.fixture
async def make_channel() -> AsyncIterator[Callable[..., Channel]]:
    """``make_channel(port, **kwargs)`` → a Channel closed at teardown."""
    channels: list[Channel] = []

    def factory(port: int | None = None, host: str | None = "127.0.0.1", **kwargs: Any) -> Channel:
        if "path" in kwargs:
            host = None
        channel = Channel(host, port, **kwargs)
        channels.append(channel)
        return channel

    yield factory
    for channel in channels:
        await channel.__aexit__(None, None, None)


@pytest.fixture
async def channel(server: Server, make_channel: Callable[..., Channel]) -> Channel:
    return make_channel(server.port)


@pytest.fixture
async def grpcio_channel(server: Server) -> AsyncIterator[Any]:
    """A ``grpc.aio`` channel to ``server``."""
    import grpc

    ch = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    yield ch
    await ch.close()


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves tasks running after its servers and channels closed.

    Torn down last (autouse fixtures are set up first), so server and channel
    fixtures have already closed. A few loop turns let finished calls settle.
    """
    async with no_task_leaks(settle_turns=50):
        yield


@pytest.fixture
async def raw_h2(server: Server) -> AsyncIterator[Callable[[], Awaitable[Any]]]:
    """``await raw_h2()`` → a :class:`core_helpers.RawH2` connected to ``server``, closed at teardown."""
    from core_helpers import RawH2

    conns: list[RawH2] = []

    async def factory() -> RawH2:
        conn = await RawH2.connect(server.port)  # type: ignore[arg-type]
        conns.append(conn)
        return conn

    yield factory
    for conn in conns:
        await conn.close()


@pytest.fixture(params=["ours", "grpcio"])
async def client_call(
    request: pytest.FixtureRequest, make_channel: Callable[..., Channel]
) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """``await client_call(server, path, cardinality, requests, metadata=, timeout=)`` → ``Outcome``,
    made once with our Channel and once with a grpc.aio channel."""
    from core_helpers import call_grpcio, call_ours

    grpcio_channels: list[Any] = []
    channels: dict[int, Any] = {}

    async def call(server: Server, path: str, cardinality: Any, requests: list[Any], **kwargs: Any) -> Any:
        port = server.port
        assert port is not None
        if request.param == "ours":
            if port not in channels:
                channels[port] = make_channel(port)
            return await call_ours(channels[port], path, cardinality, requests, **kwargs)
        import grpc

        if port not in channels:
            channels[port] = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
            grpcio_channels.append(channels[port])
        return await call_grpcio(channels[port], path, cardinality, requests, **kwargs)

    call.kind = request.param  # type: ignore[attr-defined]
    yield call
    for ch in grpcio_channels:
        await ch.close()


@pytest.fixture
async def grpcio_server() -> AsyncIterator[Callable[..., Awaitable[int]]]:
    """``await grpcio_server("pkg.Svc", {"Method": (cardinality, behaviour)}, options=[...])`` → port
    of a grpc.aio server in this loop (StringValue messages unless the spec adds types)."""
    import grpc

    from core_helpers import SV

    servers: list[Any] = []

    async def factory(service: str, methods: dict[str, Any], options: Any = None) -> int:
        kinds = {
            (False, False): grpc.unary_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
        }
        handlers = {}
        for name, (cardinality, func, *types) in methods.items():
            req, rep = types if types else (SV, SV)
            handlers[name] = kinds[cardinality.value](
                func, request_deserializer=req.FromString, response_serializer=rep.SerializeToString
            )
        server = grpc.aio.server(options=options)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        servers.append(server)
        return int(port)

    yield factory
    for server in servers:
        await server.stop(None)
