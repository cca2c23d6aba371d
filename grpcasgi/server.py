"""The bundled server (grpclib's ``Server`` API) and the handler :class:`Stream`."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl as _ssl
import inspect
from typing import Any, Awaitable, Callable, Collection, Sequence, Union

from .call import CancelReason, Middleware, build_stack, endpoint
from .codec import CodecBase, JSONCodec, ProtoCodec, StatusDetailsCodecBase, default_status_details_codec
from .config import Configuration
from .routing import Router
from .stream import Stream
from .transport.h2server import H2ServerProtocol, ServerState
from .transport.lifecycle import DRAIN_PING_TIMEOUT

__all__ = ["Server", "Stream", "LifecycleHook", "run_hooks"]

log = logging.getLogger("grpcasgi.server")

#: After the grace period and the cancellation of the calls still running,
#: how long close() waits for connections to close before it drops them (a
#: handler that ignores cancellation, a client that neither reads nor
#: answers the shutdown PING).
STOP_TIMEOUT = DRAIN_PING_TIMEOUT + 0.5

#: A startup/shutdown hook: a plain or ``async`` function without arguments.
LifecycleHook = Callable[[], Union[Awaitable[None], None]]


async def run_hooks(hooks: Sequence[LifecycleHook]) -> None:
    """Run lifecycle hooks in order, awaiting the async ones.

    Shared by :class:`Server` and the ASGI ``App``'s lifespan handling, so a
    resource opened in ``on_startup`` (a DB pool) is opened exactly once in
    either runtime.
    """
    for hook in hooks:
        result = hook()
        if inspect.isawaitable(result):
            await result


def make_codecs(codec: CodecBase | None) -> dict[str, CodecBase]:
    """Codecs a server answers in, by content subtype.

    The configured codec always; with protobuf, also the JSON mapping and the
    explicit ``+proto`` spelling, since the same message classes serve both.
    """
    codec = codec or ProtoCodec()
    codecs = {codec.__content_subtype__: codec}
    if isinstance(codec, ProtoCodec):
        codecs.setdefault("json", JSONCodec())
    return codecs


class Server:
    """Serve gRPC services on the bundled HTTP/2 server.

    ``handlers`` are service objects (generated ``<Service>Base`` subclasses or
    anything with ``__mapping__()``); ``middleware`` is a list of
    :class:`~grpcasgi.Middleware` entries, first outermost, built at start.
    ``on_startup`` hooks run in :meth:`start` before the socket listens (an
    exception there aborts the start); ``on_shutdown`` hooks run once in
    :meth:`wait_closed` after every connection has ended. The ASGI ``App``
    takes the same hooks and runs them from the ASGI lifespan protocol.
    """

    def __init__(
        self,
        handlers: Collection[Any],
        *,
        codec: CodecBase | None = None,
        status_details_codec: StatusDetailsCodecBase | None = None,
        config: Configuration | None = None,
        middleware: Sequence[Middleware] | None = None,
        on_startup: Sequence[LifecycleHook] = (),
        on_shutdown: Sequence[LifecycleHook] = (),
    ) -> None:
        self._router = Router(handlers)
        self.on_startup = list(on_startup)
        self.on_shutdown = list(on_shutdown)
        self._started_hooks = False
        self._handlers = list(handlers)
        self._codecs = make_codecs(codec)
        self._status_details_codec = status_details_codec or default_status_details_codec()
        self._config = config or Configuration()
        self._middleware = list(middleware or ())
        self._state: ServerState | None = None
        self._server: asyncio.Server | None = None
        self._closed = False
        self._close_task: asyncio.Task[None] | None = None

    @property
    def config(self) -> Configuration:
        return self._config

    @property
    def router(self) -> Router:
        return self._router

    @property
    def handlers(self) -> list[Any]:
        return self._handlers

    @property
    def middleware(self) -> list[Middleware]:
        """The middleware list; changes are refused once the server has started."""
        if self._state is not None:
            return list(self._middleware)
        return self._middleware

    def add_middleware(self, cls: Any, *args: Any, **kwargs: Any) -> None:
        if self._state is not None:
            raise RuntimeError("cannot add middleware after the server has started")
        self._middleware.append(Middleware(cls, *args, **kwargs))

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        if self._server is None:
            return ()
        return tuple(self._server.sockets)

    @property
    def port(self) -> int | None:
        """The TCP port bound (useful with ``port=0``)."""
        for sock in self.sockets:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                return int(sock.getsockname()[1])
        return None

    async def start(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        path: str | None = None,
        family: socket.AddressFamily = socket.AF_UNSPEC,
        flags: socket.AddressInfo = socket.AI_PASSIVE,
        sock: socket.socket | None = None,
        backlog: int = 100,
        ssl: _ssl.SSLContext | None = None,
        reuse_address: bool | None = None,
        reuse_port: bool | None = None,
    ) -> None:
        if self._closed:
            log.info("server was closed before it started; not starting")
            return
        if self._server is not None:
            raise RuntimeError("server is already started")
        if path is not None and (host is not None or port is not None):
            raise ValueError("path cannot be combined with host or port")
        if sock is not None and (host is not None or port is not None):
            raise ValueError("sock cannot be combined with host or port")
        if path is None and sock is None and host is None and port is None:
            raise ValueError("give host and port, path or sock")
        loop = asyncio.get_running_loop()
        factory = self._connection_factory(loop)
        if ssl is not None:
            ssl.set_alpn_protocols(["h2"])

        await run_hooks(self.on_startup)
        self._started_hooks = True
        try:
            if path is not None:
                self._server = await loop.create_unix_server(factory, path, sock=sock, backlog=backlog, ssl=ssl)
            elif sock is not None:
                self._server = await loop.create_server(
                    factory, sock=sock, backlog=backlog, ssl=ssl, reuse_address=reuse_address, reuse_port=reuse_port
                )
            else:
                self._server = await loop.create_server(
                    factory,
                    host,
                    port or 0,
                    family=family,
                    flags=flags,
                    backlog=backlog,
                    ssl=ssl,
                    reuse_address=reuse_address,
                    reuse_port=reuse_port,
                )
        except BaseException:
            await self._run_shutdown_hooks()
            raise
        for hook in _start_hooks(self._handlers):
            await hook()

    def _make_state(self) -> ServerState:
        """Build the middleware stack and the state all connections share (once).

        Separate from :meth:`start` so that other transports (the in-process
        ``grpcasgi.testing.ChannelFor``) serve through exactly the same stack.
        """
        if self._state is None:
            app = build_stack(self._middleware, endpoint)
            self._state = ServerState(app, self._router, self._config, self._codecs, self._status_details_codec)
        return self._state

    def _connection_factory(self, loop: asyncio.AbstractEventLoop) -> Callable[[], H2ServerProtocol]:
        """A protocol factory for ``loop.create_server`` (or any transport) serving this server."""
        state = self._make_state()

        def factory() -> H2ServerProtocol:
            return H2ServerProtocol(state, loop)

        return factory

    def close(self) -> None:
        """Stop accepting connections and end the running calls gracefully.

        1. ``__on_close__`` hooks run first (the health service reports
           NOT_SERVING, so load balancers stop sending).
        2. The listening sockets close.
        3. Every connection gets the two-step GOAWAY: GOAWAY with the largest
           stream id and a PING, then, on the PING's ACK (or after
           ``DRAIN_PING_TIMEOUT``), GOAWAY with the last stream processed.
           Requests the client sent before it saw the first GOAWAY are still
           served (when there is a grace period); later ones are refused
           with REFUSED_STREAM, which clients retry elsewhere.
        4. Calls in flight get ``config.shutdown_grace`` seconds to finish,
           then they are cancelled (handlers may catch ``CancelledError`` to
           clean up; the client gets UNAVAILABLE).
        5. :meth:`wait_closed` returns once every connection has closed, or
           :data:`STOP_TIMEOUT` after the cancellation, dropping connections
           whose handlers ignore cancellation (logged as errors).
        """
        if self._closed:
            return
        self._closed = True
        for hook in _close_hooks(self._handlers):
            hook()
        if self._server is None:
            return
        self._server.close()
        state = self._state
        assert state is not None
        state.closing = True
        grace = self._config.shutdown_grace
        for conn in list(state.connections):
            conn.goaway(refuse_now=grace <= 0)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # closed from outside the loop: no grace possible
            self._cancel_all()
            return
        self._close_task = loop.create_task(self._shutdown(grace))

    async def _shutdown(self, grace: float) -> None:
        if grace > 0:
            await self._wait_connections(grace)
        self._cancel_all()
        if await self._wait_connections(STOP_TIMEOUT):
            return
        assert self._state is not None
        for conn in list(self._state.connections):
            for call in conn.calls.values():
                log.error("%s: the handler did not end after cancellation; abandoning it", call.scope["path"])
            conn.kill()

    async def _wait_connections(self, timeout: float) -> bool:
        """Wait until every connection has closed; False on timeout."""
        assert self._state is not None
        pending = [conn.closed for conn in self._state.connections if not conn.closed.done()]
        if pending:
            _, still = await asyncio.wait(pending, timeout=timeout)
            return not still
        return True

    def _cancel_all(self) -> None:
        assert self._state is not None
        for conn in list(self._state.connections):
            conn.cancel_calls(CancelReason.SHUTDOWN)

    async def wait_closed(self) -> None:
        """Wait until the server is closed and every connection has ended."""
        if self._server is None:
            if not self._closed:
                raise RuntimeError("server is not started")
            return
        if self._close_task is not None:
            await asyncio.shield(self._close_task)
        await self._server.wait_closed()
        await self._run_shutdown_hooks()

    async def _run_shutdown_hooks(self) -> None:
        if self._started_hooks:
            self._started_hooks = False
            await run_hooks(self.on_shutdown)

    async def __aenter__(self) -> "Server":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()
        await self.wait_closed()


def _start_hooks(handlers: list[Any]) -> list[Any]:
    return [h.__on_start__ for h in handlers if hasattr(h, "__on_start__")]


def _close_hooks(handlers: list[Any]) -> list[Any]:
    return [h.__on_close__ for h in handlers if hasattr(h, "__on_close__")]
