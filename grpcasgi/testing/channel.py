""":class:`ChannelFor`: a client :class:`~grpcasgi.client.Channel` wired to
services in the same process, without a socket.

Unlike a mock, every call goes through the real code: the client's HTTP/2
connection, framing, compression, deadlines and flow control, the server's
HTTP/2 connection, routing, the middleware stack and the handler. Only the
socket is replaced, by an in-memory transport pair
(:mod:`grpcasgi.testing.memory`) that delivers bytes asynchronously and
applies backpressure like TCP. So a test written against ``ChannelFor``
behaves like production, minus ports, without cleanup hazards::

    async with ChannelFor([Greeter()]) as channel:
        reply = await GreeterStub(channel).SayHello(HelloRequest(name="Ann"))
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Collection, Sequence

from ..call import Middleware
from ..client import Channel
from ..codec import CodecBase, StatusDetailsCodecBase
from ..config import Configuration
from ..server import Server, _close_hooks, _start_hooks
from ..transport.h2client import H2ClientProtocol
from ..transport.h2server import H2ServerProtocol
from .memory import DEFAULT_HIGH_WATER, memory_pipe

__all__ = ["ChannelFor"]

log = logging.getLogger("grpcasgi.testing")

#: How long exiting ``ChannelFor`` waits for the in-process connections to end.
_CLOSE_TIMEOUT = 5.0


class ChannelFor:
    """Async context manager yielding a :class:`Channel` connected in-process to ``services``.

    ``middleware``, ``config``, ``codec`` and ``status_details_codec`` are
    those of :class:`~grpcasgi.server.Server`; ``config`` (limits, windows)
    applies to both ends. ``client_middleware`` and ``compression`` are passed
    to the :class:`Channel`. Services' ``__on_start__``/``__on_close__`` hooks
    run on enter/exit as with a real server. Each (re)connect of the channel
    opens a new in-process connection.
    """

    def __init__(
        self,
        services: Collection[Any],
        *,
        middleware: Sequence[Middleware] | None = None,
        config: Configuration | None = None,
        codec: CodecBase | None = None,
        status_details_codec: StatusDetailsCodecBase | None = None,
        client_middleware: Sequence[Middleware] | None = None,
        compression: str | None = None,
        high_water: int = DEFAULT_HIGH_WATER,
    ) -> None:
        self.server = Server(
            services, codec=codec, status_details_codec=status_details_codec, config=config, middleware=middleware
        )
        self._channel_kwargs: dict[str, Any] = {
            "config": config,
            "codec": codec,
            "status_details_codec": status_details_codec,
            "compression": compression,
            "middleware": client_middleware,
        }
        self._high_water = high_water
        self._channel: Channel | None = None
        self._connections: list[H2ServerProtocol] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def connections(self) -> list[H2ServerProtocol]:
        """Server-side connections opened so far (one per channel (re)connect)."""
        return list(self._connections)

    async def __aenter__(self) -> Channel:
        if self._channel is not None:
            raise RuntimeError("ChannelFor is not reentrant")
        self._loop = asyncio.get_running_loop()
        self._factory = self.server._connection_factory(self._loop)
        for hook in _start_hooks(self.server.handlers):
            await hook()
        channel = Channel("in-process", 0, **self._channel_kwargs)
        channel._connector = self._connect
        self._channel = channel
        return channel

    async def _connect(self, client_factory: Any) -> H2ClientProtocol:
        assert self._loop is not None
        client: H2ClientProtocol = client_factory()
        server = self._factory()
        client_end, server_end = memory_pipe(
            self._loop,
            client,
            server,
            high_water=self._high_water,
            a_name=("in-process-client", 0),
            b_name=("in-process-server", 0),
        )
        self._connections.append(server)
        # The server speaks first (its SETTINGS), as on a socket it could.
        server.connection_made(server_end)
        client.connection_made(client_end)
        return client

    async def __aexit__(self, *exc_info: Any) -> None:
        channel = self._channel
        assert channel is not None
        try:
            await channel.__aexit__(*exc_info)
            # The client's close reaches every server connection as a lost
            # connection, which cancels the calls still running there.
            for conn in self._connections:
                if conn.transport is not None:
                    conn.transport.close()
            pending = [conn.closed for conn in self._connections if not conn.closed.done()]
            if pending:
                _, still = await asyncio.wait(pending, timeout=_CLOSE_TIMEOUT)
                if still:
                    log.warning("%d in-process connection(s) did not close in %ss", len(still), _CLOSE_TIMEOUT)
        finally:
            for hook in _close_hooks(self.server.handlers):
                hook()
            self._channel = None
