"""pytest fixtures for grpcasgi services, registered through the ``pytest11`` entry point.

Installed with grpcasgi, so nothing needs to be added to ``conftest.py``.
The fixtures are async and need `pytest-asyncio
<https://pytest-asyncio.readthedocs.io>`_ (``asyncio_mode = "auto"`` or
``@pytest.mark.asyncio`` tests); without it this plugin still loads and the
fixtures fail only when a test uses them.

``grpc_server``
    A factory starting a bundled :class:`~grpcasgi.server.Server` on
    ``127.0.0.1``, port 0 (a free port; ``server.port`` is the one bound).
    Every server it started is closed at teardown::

        async def test_hello(grpc_server, grpc_channel):
            server = await grpc_server([Greeter()], middleware=[Middleware(Auth)])
            channel = grpc_channel(server)
            reply = await GreeterStub(channel).SayHello(HelloRequest(name="Ann"))

    Keyword arguments are those of ``Server(...)`` (``middleware``,
    ``config``, ``codec``, ``status_details_codec``) and of ``start``
    (``host``, ``port``, ``ssl``).

``grpc_channel``
    A factory of :class:`~grpcasgi.client.Channel` objects closed at
    teardown: ``grpc_channel(server)`` connects to a server from
    ``grpc_server``; ``grpc_channel(host, port)`` to anything else. Keyword
    arguments go to ``Channel(...)`` (``compression``, ``config``, ``ssl``...).

For tests that need no socket at all, use
:class:`grpcasgi.testing.ChannelFor` directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Collection

import pytest

if TYPE_CHECKING:
    from ..client import Channel
    from ..server import Server

__all__ = ["grpc_server", "grpc_channel"]

ServerFactory = Callable[..., Awaitable["Server"]]
ChannelFactory = Callable[..., "Channel"]

try:
    import pytest_asyncio as _pytest_asyncio
except ImportError:  # pragma: no cover - exercised in a subprocess by the tests
    _pytest_asyncio = None  # type: ignore[assignment]

_NEEDS_ASYNCIO = "the grpcasgi fixtures need pytest-asyncio (pip install pytest-asyncio)"


async def _grpc_server() -> AsyncIterator[ServerFactory]:
    """Factory: ``await grpc_server([services], **server_options)`` → a started Server on 127.0.0.1 (closed at teardown)."""
    from ..server import Server

    servers: list[Server] = []

    async def start(
        services: Collection[Any],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl: Any = None,
        **options: Any,
    ) -> Server:
        server = Server(services, **options)
        await server.start(host, port, ssl=ssl)
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in reversed(servers):
            server.close()
        for server in reversed(servers):
            await server.wait_closed()


async def _grpc_channel() -> AsyncIterator[ChannelFactory]:
    """Factory: ``grpc_channel(server)`` or ``grpc_channel(host, port)`` → a Channel (closed at teardown)."""
    from ..client import Channel
    from ..server import Server

    channels: list[Channel] = []

    def connect(target: Any = None, port: int | None = None, **options: Any) -> Channel:
        if isinstance(target, Server):
            if port is not None:
                raise TypeError("grpc_channel(server) takes no port")
            if target.port is None:
                raise ValueError("the server is not listening on a TCP port; was it started?")
            channel = Channel("127.0.0.1", target.port, **options)
        else:
            channel = Channel(target, port, **options)
        channels.append(channel)
        return channel

    try:
        yield connect
    finally:
        for channel in reversed(channels):
            await channel.__aexit__(None, None, None)


def _missing_asyncio() -> None:
    pytest.fail(_NEEDS_ASYNCIO, pytrace=False)


if _pytest_asyncio is not None:
    grpc_server = _pytest_asyncio.fixture(_grpc_server, name="grpc_server")
    grpc_channel = _pytest_asyncio.fixture(_grpc_channel, name="grpc_channel")
else:  # pragma: no cover - exercised in a subprocess by the tests
    grpc_server = pytest.fixture(_missing_asyncio, name="grpc_server")
    grpc_channel = pytest.fixture(_missing_asyncio, name="grpc_channel")
