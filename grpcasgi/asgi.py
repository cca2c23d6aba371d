"""Run grpcasgi services as an ASGI 3 application (Hypercorn), beside HTTP apps.

``App(handlers, middleware=[...])`` is the ASGI twin of the bundled
:class:`~grpcasgi.server.Server`: the same routing, the same middleware stack
around the same endpoint, the same :class:`~grpcasgi.call.ServerCall`
lifecycle (deadlines, cancellation, error boundary). Only the byte transport
differs, so a service behaves identically on either runtime.

What the ASGI server must provide, and why each rule below exists (measured
against Hypercorn 0.18, see ``docs/asgi.md``):

* HTTP/2 and the ``http.response.trailers`` extension: gRPC ends every call
  with trailers. Without them we answer with a clear HTTP error instead of a
  call that can never end.
* Exactly one ``http.response.trailers`` message, always after
  ``http.response.start``: Hypercorn drops trailers after the first when
  ``more_trailers`` is used, and trailers without a start come out as a
  HEADERS + empty DATA sequence grpcio rejects. An error that happens before
  any reply is therefore sent as start + empty body + trailers.
* Request bodies are read eagerly: Hypercorn's per-stream queue holds only
  ``max_app_queue_size`` (10) chunks and its connection loop blocks on a full
  queue, so a handler that does not read would stall every other call on the
  connection. A reader task moves chunks into the call's own
  :class:`~grpcasgi.protocol.framing.MessageDecoder` up to a byte budget
  (``max(http2_stream_window_size, max_receive_message_length + 5)``; it can
  always hold the next whole message, so a reading handler never waits on
  it). Only beyond that budget does the reader pause, which is the sole way
  to push back on a client under ASGI.

* Shutdown starts before the lifespan says so: Hypercorn sends
  ``lifespan.shutdown`` only after its connections are gone, so under
  Hypercorn :meth:`App.server_shutting_down` is called when the worker
  *begins* draining (``grpcasgi._hypercorn``): the services' ``__on_close__``
  hooks run while clients can still hear them, and calls still running at
  the end of the grace are cancelled with a status.

:class:`GrpcDispatcher` (or :func:`mount_grpc`) serves this app and any
other ASGI app (Starlette, FastAPI) on one port, by content type.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, AsyncContextManager, AsyncIterator, Awaitable, Callable, Collection, MutableMapping, Sequence

from . import _hypercorn
from .call import CancelReason, Middleware, build_stack, endpoint, make_scope
from .codec import CodecBase, StatusDetailsCodecBase, default_status_details_codec
from .config import Configuration
from .exceptions import ProtocolError, StreamTerminatedError
from .peer import Peer
from .protocol.compression import SUPPORTED_ENCODINGS
from .protocol.content_type import content_type_for, is_grpc_content_type
from .protocol.framing import MessageDecoder
from .protocol.metadata import encode_metadata
from .protocol.headers import RequestRejected, parse_request, response_headers, trailers
from .protocol.status import STATUS_HEADER_VALUES, Status, encode_grpc_message
from .routing import Router
from .server import LifecycleHook, Server, make_codecs, run_hooks
from .transport.messages import DecodingServerCall, encode_reply_message, end_of_call, response_encoding
from .types import Scope, SendEvent

__all__ = ["App", "AsgiServerCall", "GrpcDispatcher", "mount_grpc"]

log = logging.getLogger("grpcasgi.asgi")

ASGIScope = MutableMapping[str, Any]
ASGIMessage = MutableMapping[str, Any]
ASGIReceive = Callable[[], Awaitable[ASGIMessage]]
ASGISend = Callable[[ASGIMessage], Awaitable[None]]
ASGIApp = Callable[[ASGIScope, ASGIReceive, ASGISend], Awaitable[None]]
#: ``lifespan(app)`` returns an async context manager entered at startup and
#: exited at shutdown (Starlette's ``lifespan=`` convention).
Lifespan = Callable[["App"], AsyncContextManager[Any]]

_TRAILERS_EXTENSION = "http.response.trailers"
_HTTP2_VERSIONS = ("2", "3")


class App:
    """An ASGI 3 application serving gRPC services.

    Takes the same arguments as :class:`~grpcasgi.server.Server`, plus the
    lifecycle hooks: ``on_startup``/``on_shutdown`` (plain or async functions)
    and ``lifespan`` (an async context manager factory). They run from the
    ASGI lifespan protocol here, and from ``start``/``wait_closed`` on the
    bundled server returned by :meth:`server`, so a resource opened there is
    opened once whichever runtime serves the app.
    """

    def __init__(
        self,
        handlers: Collection[Any],
        *,
        middleware: Sequence[Middleware] = (),
        codec: CodecBase | None = None,
        status_details_codec: StatusDetailsCodecBase | None = None,
        config: Configuration | None = None,
        on_startup: Sequence[LifecycleHook] = (),
        on_shutdown: Sequence[LifecycleHook] = (),
        lifespan: Lifespan | None = None,
    ) -> None:
        self.handlers = list(handlers)
        self.router = Router(self.handlers)
        self.middleware = list(middleware)
        self.codec = codec
        self.codecs = make_codecs(codec)
        self.status_details_codec = status_details_codec or default_status_details_codec()
        self.config = config or Configuration()
        self.on_startup = list(on_startup)
        self.on_shutdown = list(on_shutdown)
        self.lifespan = lifespan
        self._lifespan_stack: contextlib.AsyncExitStack | None = None
        self._stack: Any = None
        self._warned: set[str] = set()
        # Hypercorn imports its protocol modules before it loads the app, so
        # the fix is in place before the first connection; __call__ checks
        # again for apps built before Hypercorn was imported.
        self._checked_server = _hypercorn.apply()
        #: Calls running now (cancelled when a shutdown's grace period ends).
        self.calls: set[AsgiServerCall] = set()
        self._closed_services = False  # the services' __on_close__ hooks ran
        self._grace_timer: asyncio.TimerHandle | None = None
        cfg = self.config
        #: Request bytes buffered per call before the reader stops draining ASGI.
        self.receive_budget = max(cfg.http2_stream_window_size, cfg.max_receive_message_length + 5)

    # -- lifecycle --------------------------------------------------------

    async def startup(self) -> None:
        """Run ``on_startup`` hooks, then enter ``lifespan``."""
        await run_hooks(self.on_startup)
        if self.lifespan is not None:
            stack = contextlib.AsyncExitStack()
            await stack.enter_async_context(self.lifespan(self))
            self._lifespan_stack = stack

    async def shutdown(self) -> None:
        """Exit ``lifespan``, then run ``on_shutdown`` hooks."""
        stack, self._lifespan_stack = self._lifespan_stack, None
        try:
            if stack is not None:
                await stack.aclose()
        finally:
            await run_hooks(self.on_shutdown)

    def server(self) -> Server:
        """A bundled :class:`~grpcasgi.server.Server` serving this app: same
        services, middleware, codecs, configuration and lifecycle hooks."""
        return Server(
            self.handlers,
            codec=self.codec,
            status_details_codec=self.status_details_codec,
            config=self.config,
            middleware=self.middleware,
            on_startup=[self.startup],
            on_shutdown=[self.shutdown],
        )

    @property
    def stack(self) -> Any:
        """The middleware stack, built on first use (like ``Server.start``)."""
        if self._stack is None:
            self._stack = build_stack(self.middleware, endpoint)
        return self._stack

    # -- ASGI ---------------------------------------------------------------

    async def __call__(self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        if not self._checked_server:
            # Under Hypercorn, before the first request (the lifespan, if any, comes first).
            self._checked_server = True
            _hypercorn.apply()
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            self._warn_once("websocket", "a WebSocket connection reached the gRPC app; refused")
            await send({"type": "websocket.close", "code": 1003})
        else:
            raise RuntimeError(f"grpcasgi.asgi.App cannot serve ASGI scope type {kind!r}")

    async def serve_startup(self) -> None:
        """Everything that runs when an ASGI server starts: :meth:`startup`,
        then the services' ``__on_start__`` hooks (which ``Server`` runs itself).

        Under Hypercorn it also asks to hear when the worker *begins* its
        graceful shutdown (:meth:`server_shutting_down`), which Hypercorn
        reports through the lifespan only after its connections are closed.
        """
        self._closed_services = False
        await self.startup()
        await run_hooks([h.__on_start__ for h in self.handlers if hasattr(h, "__on_start__")])
        _hypercorn.add_shutdown_listener(self.server_shutting_down)

    async def serve_shutdown(self) -> None:
        """The services' ``__on_close__`` hooks (unless the server's shutdown
        already ran them), then :meth:`shutdown`."""
        _hypercorn.remove_shutdown_listener(self.server_shutting_down)
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None
        try:
            await self._close_services()
        finally:
            await self.shutdown()

    async def server_shutting_down(self, grace: float | None = None) -> None:
        """The ASGI server began a graceful shutdown; its connections still work.

        Like the first steps of the bundled ``Server.close()``: the services'
        ``__on_close__`` hooks run now (``contrib.health`` tells open watches
        NOT_SERVING and ends them, so load balancers drain this server while
        its calls finish), and calls still running ``grace`` seconds later
        are cancelled with UNAVAILABLE (handlers see ``CancelledError``), so
        every client gets a status before the server drops the connection.
        ``grace=None`` cancels nothing. Called by the Hypercorn integration
        (``grpcasgi._hypercorn``); call it yourself under another server.
        """
        if grace is not None:
            if self._grace_timer is not None:
                self._grace_timer.cancel()
            self._grace_timer = asyncio.get_running_loop().call_later(grace, self._cancel_calls)
        await self._close_services()

    async def _close_services(self) -> None:
        if self._closed_services:
            return
        self._closed_services = True
        await run_hooks([h.__on_close__ for h in self.handlers if hasattr(h, "__on_close__")])

    def _cancel_calls(self) -> None:
        self._grace_timer = None
        running = [call for call in self.calls if not call.response_ended]
        if running:
            log.info("shutting down: cancelling %d call(s) still running after the grace period", len(running))
        for call in running:
            call.cancel(CancelReason.SHUTDOWN)

    @contextlib.asynccontextmanager
    async def lifespan_context(self, _app: Any = None) -> AsyncIterator[None]:
        """This app's ASGI startup/shutdown as an async context manager.

        For hosts that do not pass lifespan events to mounted apps, such as
        Starlette's ``Mount``: ``Starlette(routes=[Mount(..., app=grpc_app)],
        lifespan=grpc_app.lifespan_context)``.
        """
        await self.serve_startup()
        try:
            yield
        finally:
            await self.serve_shutdown()

    async def _lifespan(self, receive: ASGIReceive, send: ASGISend) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.serve_startup()
                except Exception as exc:
                    log.exception("gRPC app startup failed")
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.serve_shutdown()
                except Exception as exc:
                    log.exception("gRPC app shutdown failed")
                    await send({"type": "lifespan.shutdown.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _warn_once(self, key: str, message: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)

    def _method_path(self, scope: ASGIScope) -> str:
        """The gRPC method path, also when mounted below a prefix.

        Current ASGI servers and Starlette's ``Mount`` keep the full path in
        ``path`` and the mount point in ``root_path``; older conventions strip
        the prefix from ``path``. Whichever form names a served method wins.
        """
        path: str = scope.get("path") or ""
        root: str = scope.get("root_path") or ""
        if root and not path.startswith(root):
            joined = root.rstrip("/") + path
            if self.router.resolve(path)[2] is None and self.router.resolve(joined)[2] is not None:
                return joined
        return path

    async def _http(self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        version = str(scope.get("http_version", "1.1"))
        if version not in _HTTP2_VERSIONS:
            self._warn_once(
                "http1",
                "gRPC request over HTTP/%s refused with 505: gRPC needs HTTP/2 "
                "(clients must use h2c prior knowledge or TLS with ALPN h2)",
                version,
            )
            await _refuse(
                receive,
                send,
                505,
                Status.INTERNAL,
                f"gRPC requires HTTP/2, this request came over HTTP/{version}",
            )
            return
        extensions = scope.get("extensions") or {}
        if _TRAILERS_EXTENSION not in extensions:
            self._warn_once(
                "trailers",
                "gRPC request refused with 501: the ASGI server does not offer the "
                "'http.response.trailers' extension (Hypercorn >= 0.18 does)",
            )
            await _refuse(
                receive,
                send,
                501,
                Status.UNIMPLEMENTED,
                "the ASGI server does not support the http.response.trailers extension gRPC needs",
            )
            return
        path = self._method_path(scope)
        try:
            head = parse_request(scope.get("method", ""), path, scope.get("headers") or ())
        except RequestRejected as exc:
            log.info("rejected request for %s: %s", path, exc.message)
            if exc.http_status == 200:
                await _trailers_only(receive, send, exc.status, exc.message)
            else:
                await _refuse(receive, send, exc.http_status, exc.status, exc.message)
            return
        codec = self.codecs.get(head.codec)
        if codec is None:
            message = f"unsupported content-type {head.content_type!r}"
            log.info("rejected request for %s: %s", head.path, message)
            await _refuse(receive, send, 415, Status.UNKNOWN, message)
            return
        if head.encoding is not None and head.encoding not in SUPPORTED_ENCODINGS:
            log.info("rejected request for %s: unsupported grpc-encoding %r", head.path, head.encoding)
            await _trailers_only(
                receive, send, Status.UNIMPLEMENTED, f"grpc-encoding {head.encoding!r} is not supported"
            )
            return
        client = scope.get("client")
        peer = Peer(tuple(client) if client else None)
        grpc_scope = make_scope(head, self.router, peer, "asgi", extensions={"asgi.scope": scope})
        call = AsgiServerCall(grpc_scope, codec, self, receive, send)
        self.calls.add(call)
        try:
            await call.run(self.stack)
        finally:
            self.calls.discard(call)


class AsgiServerCall(DecodingServerCall):
    """A :class:`~grpcasgi.call.ServerCall` over one ASGI HTTP/2 request.

    A reader task moves ``http.request`` chunks into the call's decoder (see
    the module docstring for why eagerly) and turns ``http.disconnect``
    before the response ended into a RESET cancellation. ``send`` maps
    grpcasgi events to ``http.response.start`` (with ``trailers: True``),
    ``http.response.body`` chunks and one ``http.response.trailers``.
    """

    __slots__ = (
        "_app",
        "_asgi_receive",
        "_asgi_send",
        "_resume",
        "_reader",
        "_completed",
        "_response_encoding",
    )

    _log = log

    def __init__(
        self, scope: Scope, codec: CodecBase, app: App, receive: ASGIReceive, send: ASGISend
    ) -> None:
        super().__init__(scope, codec, app.config.max_receive_message_length)
        self._app = app
        self._asgi_receive = receive
        self._asgi_send = send
        self._resume: asyncio.Future[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._completed = False  # the trailers went out
        # The request's encoding if the client accepts it; the app may choose
        # another in grpc.response.start (same rule as the bundled server).
        self._response_encoding: str | None = response_encoding(scope)

    async def run(self, app: Any) -> None:
        """Run the call to its end; the reader task never outlives it.

        After a complete response the reader runs on until ``http.disconnect``
        (which ASGI promises once the response is sent): Hypercorn may still be
        blocked putting a request chunk into the stream's full queue, and
        abandoning the queue then would stall the whole connection.
        """
        loop = asyncio.get_running_loop()
        reader = self._reader = loop.create_task(self._read())
        try:
            await self.start(app, loop)
        finally:
            if self._completed and not reader.done():
                await _finish_draining(reader, self.scope["path"])
            elif not reader.done():
                reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    # -- input ----------------------------------------------------------------

    async def _read(self) -> None:
        receive = self._asgi_receive
        budget = self._app.receive_budget
        loop = asyncio.get_running_loop()
        while True:
            if not self._discard and self._decoder.buffered > budget:
                # The handler is not keeping up: stop taking chunks, which makes
                # Hypercorn stop acknowledging the client's data.
                resume = self._resume = loop.create_future()
                await resume
                continue
            message = await receive()
            kind = message["type"]
            if kind == "http.request":
                body = message.get("body")
                if body and not self._discard:
                    self._decoder.feed(body)
                if not message.get("more_body", False):
                    self._request_ended = True
                self._wake()
            elif kind == "http.disconnect":
                self._disconnected = True
                self._wake()
                if not self.response_ended:
                    self.cancel(CancelReason.RESET)
                return

    def _unpause_reader(self) -> None:
        resume = self._resume
        if resume is not None and not resume.done():
            resume.set_result(None)

    def _discard_input(self) -> None:
        """Drop what is buffered and all that follows; keep draining ASGI so the
        server can deliver ``http.disconnect`` and close the stream."""
        self._discard = True
        self._decoder = MessageDecoder(0)
        self._unpause_reader()

    # -- receive (DecodingServerCall's hooks) -----------------------------------

    def _message_taken(self, size: int) -> None:
        """Room in the receive budget again: a paused reader takes chunks again."""
        if self._decoder.buffered <= self._app.receive_budget:
            self._unpause_reader()

    def _before_wait(self) -> None:
        """Nothing to do: the reader keeps taking chunks up to the budget, which
        always holds the next whole message, so waiting can never stall it."""

    # -- output ---------------------------------------------------------------

    async def send(self, event: SendEvent) -> None:
        kind = event["type"]
        if self._disconnected and not self.response_ended:
            raise StreamTerminatedError("the stream was reset by the client")
        if kind == "grpc.response.message":
            if self.response_ended:
                raise ProtocolError("cannot send a message: the call has ended")
            if not self.response_started:
                await self._send_start(None, self._response_encoding)
            prefix, data = encode_reply_message(
                self._codec,
                event["message"],  # type: ignore[typeddict-item]
                self.scope["reply_type"],
                self._app.config.max_send_message_length,
                self._response_encoding if event.get("compress", True) else None,
            )
            await self._asgi_send({"type": "http.response.body", "body": prefix + data, "more_body": True})
        elif kind == "grpc.response.start":
            if self.response_started:
                raise ProtocolError("initial metadata was already sent")
            if self.response_ended:
                raise ProtocolError("the call has ended")
            if "compression" in event:
                self._response_encoding = response_encoding(self.scope, event["compression"])  # type: ignore[typeddict-item]
            await self._send_start(event.get("metadata"), self._response_encoding)
        elif kind == "grpc.response.end":
            if self.response_ended:
                raise ProtocolError("the call has already ended")
            await self._send_end(event)
        else:
            raise ProtocolError(f"unknown event type {kind!r}")

    async def _send_start(self, metadata: Any, encoding: str | None) -> None:
        self.response_started = True
        headers = response_headers(
            content_type_for(self._codec.__content_subtype__),
            encode_metadata(metadata) if metadata else None,
            encoding,
            http2=False,
        )
        await self._asgi_send({"type": "http.response.start", "status": 200, "headers": headers, "trailers": True})

    async def _send_end(self, event: Any) -> None:
        if event.get("reset"):
            # ASGI cannot reset a stream; CANCELLED trailers tell the client
            # the same thing RST_STREAM(CANCEL) does on the bundled server.
            event = {"type": "grpc.response.end", "status": Status.CANCELLED, "message": "Cancelled by the server"}
        status, message, details_bin, encoded = end_of_call(event, self._app.status_details_codec)
        self.response_ended = True
        # The response is complete: request data no longer matters, and the
        # reader must keep draining so Hypercorn can close the stream.
        self._discard_input()
        if not self.response_started:
            await self._send_start(None, None)
        await self._asgi_send({"type": "http.response.body", "body": b"", "more_body": False})
        await self._asgi_send({"type": "http.response.trailers", "headers": trailers(status, message, details_bin, encoded)})
        self._completed = True


# -- responses without a call ---------------------------------------------------


#: Safety net for ASGI servers that never send ``http.disconnect`` after a
#: complete response (the spec says they must; Hypercorn does at once).
DISCONNECT_WAIT = 5.0


async def _finish_draining(reader: asyncio.Task[None], what: str) -> None:
    done, _ = await asyncio.wait([reader], timeout=DISCONNECT_WAIT)
    if not done:
        log.warning("%s: no http.disconnect %.0f s after the response ended; stopped reading", what, DISCONNECT_WAIT)
        reader.cancel()


async def _drain(receive: ASGIReceive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _while_draining(receive: ASGIReceive, messages: Sequence[ASGIMessage], send: ASGISend) -> None:
    """Send a final response while consuming the request body until ``http.disconnect``.

    Hypercorn blocks its connection loop when a stream's queue is full and
    delivers ``http.disconnect`` into the same queue when the response ends;
    without a reader both could wait forever.
    """
    drainer = asyncio.get_running_loop().create_task(_drain(receive))
    completed = False
    try:
        for message in messages:
            await send(message)
        completed = True
    finally:
        if completed and not drainer.done():
            await _finish_draining(drainer, "refused request")
        elif not drainer.done():
            drainer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await drainer


def _status_headers(status: Status, message: str) -> list[tuple[bytes, bytes]]:
    return [(b"grpc-status", STATUS_HEADER_VALUES[status]), (b"grpc-message", encode_grpc_message(message))]


async def _refuse(receive: ASGIReceive, send: ASGISend, http_status: int, status: Status, message: str) -> None:
    """A plain HTTP error: readable by curl, and carries a gRPC status for gRPC clients."""
    body = (message + "\n").encode("utf-8")
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode("ascii")),
        *_status_headers(status, message),
    ]
    await _while_draining(
        receive,
        [
            {"type": "http.response.start", "status": http_status, "headers": headers},
            {"type": "http.response.body", "body": body, "more_body": False},
        ],
        send,
    )


async def _trailers_only(receive: ASGIReceive, send: ASGISend, status: Status, message: str) -> None:
    """A gRPC status without a call: start + empty body + one trailers message."""
    await _while_draining(
        receive,
        [
            {
                "type": "http.response.start",
                "status": 200,
                "headers": response_headers(content_type_for("proto"), None, None, http2=False),
                "trailers": True,
            },
            {"type": "http.response.body", "body": b"", "more_body": False},
            {"type": "http.response.trailers", "headers": trailers(status, message)},
        ],
        send,
    )


# -- one port, gRPC and HTTP ----------------------------------------------------


def _is_grpc(scope: ASGIScope) -> bool:
    if scope["type"] != "http":
        return False
    for name, value in scope.get("headers") or ():
        if name == b"content-type":
            return is_grpc_content_type(value)
    return False


class GrpcDispatcher:
    """One ASGI app for one port: gRPC requests to ``grpc_app``, everything else to ``http_app``.

    A request is gRPC when its content type is ``application/grpc`` or
    ``application/grpc+<codec>`` (gRPC-Web's ``application/grpc-web`` goes to
    the HTTP app). Lifespan events reach both apps (gRPC first at startup,
    last at shutdown). Wrap only ``http_app`` in HTTP middleware such as
    Starlette's ``BaseHTTPMiddleware`` or ``GZipMiddleware``: they do not
    understand response trailers or would compress gRPC frames.
    """

    def __init__(self, grpc_app: ASGIApp, http_app: ASGIApp) -> None:
        self.grpc_app = grpc_app
        self.http_app = http_app

    async def __call__(self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] == "lifespan":
            await _fan_out_lifespan([self.grpc_app, self.http_app], scope, receive, send)
        elif _is_grpc(scope):
            await self.grpc_app(scope, receive, send)
        else:
            await self.http_app(scope, receive, send)


def mount_grpc(grpc_app: ASGIApp, http_app: ASGIApp) -> GrpcDispatcher:
    """Serve ``grpc_app`` beside ``http_app`` on one port (see :class:`GrpcDispatcher`)."""
    return GrpcDispatcher(grpc_app, http_app)


class _LifespanChild:
    """One app's side of a shared lifespan: its own queue in, its replies out."""

    def __init__(self, app: ASGIApp, scope: ASGIScope) -> None:
        self.app = app
        self.inbox: asyncio.Queue[ASGIMessage] = asyncio.Queue()
        self.outbox: asyncio.Queue[ASGIMessage] = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._run(scope))
        self.supported = True

    async def _run(self, scope: ASGIScope) -> None:
        try:
            await self.app(scope, self.inbox.get, self.outbox.put)
        except Exception as exc:
            # ASGI: an app that raises on a lifespan scope does not support it.
            log.debug("%r does not handle lifespan (%r); ignoring it", self.app, exc)
            self.supported = False

    async def ask(self, message: ASGIMessage) -> ASGIMessage | None:
        """Forward ``message`` and wait for the reply (None: the app has no lifespan)."""
        if not self.supported or self.task.done():
            return None
        await self.inbox.put(message)
        reply = asyncio.ensure_future(self.outbox.get())
        await asyncio.wait([reply, self.task], return_when=asyncio.FIRST_COMPLETED)
        if reply.done():
            return reply.result()
        reply.cancel()
        return None

    async def close(self) -> None:
        if not self.task.done():
            self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def _fan_out_lifespan(apps: Sequence[ASGIApp], scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
    children = [_LifespanChild(app, dict(scope)) for app in apps]
    started: list[_LifespanChild] = []
    try:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                for child in children:
                    reply = await child.ask({"type": "lifespan.startup"})
                    if reply is not None and reply["type"] == "lifespan.startup.failed":
                        for done in reversed(started):
                            await done.ask({"type": "lifespan.shutdown"})
                        await send({"type": "lifespan.startup.failed", "message": reply.get("message", "")})
                        return
                    started.append(child)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                failures = []
                for child in reversed(started):
                    reply = await child.ask({"type": "lifespan.shutdown"})
                    if reply is not None and reply["type"] == "lifespan.shutdown.failed":
                        failures.append(reply.get("message", ""))
                if failures:
                    await send({"type": "lifespan.shutdown.failed", "message": "; ".join(failures)})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                return
    finally:
        for child in children:
            await child.close()
