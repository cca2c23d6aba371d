"""Client middleware: a channel's calls as scopes flowing through a stack.

``Channel(host, port, middleware=[Middleware(cls, **options), ...])`` runs
every call as ``await app(scope, receive, send)``, the server's contract seen
from the other side (``docs/spec.md``, "Client calls"):

* the scope is a :class:`~grpcasgi.types.ClientScope` (``type`` is
  ``"grpc.client"``); middleware may change ``scope["metadata"]`` and
  ``scope["deadline"]`` before passing the call on;
* ``receive()`` yields what the caller sends: ``grpc.request.message`` events
  (``size`` is the message's encoded size) and one ``grpc.request.end``;
* ``send(event)`` delivers the response to the caller:
  ``grpc.response.start`` (initial metadata; absent for a Trailers-Only
  response), ``grpc.response.message`` events and exactly one
  ``grpc.response.end`` carrying the status.

The innermost app, :class:`ChannelTransport`, performs one attempt of the call
on the channel's HTTP/2 connection. It never raises for a call's status: a
non-OK status from the server, a transport failure (UNAVAILABLE), an expired
deadline (DEADLINE_EXCEEDED) or a bad response (INTERNAL, ...) all become the
final ``grpc.response.end`` event, so every middleware -- retry above all --
sees one uniform shape. Exceptions that are not a status (a message the codec
cannot encode, invalid metadata, a bug) propagate to the caller unchanged.
A middleware that raises :class:`~grpcasgi.GRPCError` ends the call with that
status, as if it had sent the end event.

The user-facing :class:`StackStream` keeps the client ``Stream`` API. Unary
calls cost no task: the stack runs inline in the caller's task when it first
waits for the response (the request is complete by then). Other calls run the
stack in one task per call, connected to the caller by small bounded queues,
so backpressure still reaches the socket; client-streaming calls add one
task inside :class:`ChannelTransport` that moves request messages to the
wire while responses are read.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any, Generic, Sequence, TypeVar

from multidict import MultiDict

from .call import Middleware, build_stack
from .codec import ProtoCodec
from .const import Cardinality
from .deadline import Deadline
from .exceptions import GRPCError, ProtocolError
from .protocol.metadata import MetadataLike, MetadataValue
from .protocol.status import Status
from .types import (
    VERSION_INFO,
    ClientApp,
    ClientScope,
    Receive,
    ReceiveEvent,
    RequestEndEvent,
    RequestMessageEvent,
    ResponseMessageEvent,
    ResponseEndEvent,
    Send,
    SendEvent,
)

if TYPE_CHECKING:
    from .client import Channel

from .client import Stream

__all__ = ["ClientStack", "ChannelTransport", "StackStream", "client_scope", "PREVIOUS_ATTEMPTS", "PEER_EXTENSION"]

log = logging.getLogger("grpcasgi.client")

_T = TypeVar("_T")
_Req = TypeVar("_Req")
_Rep = TypeVar("_Rep")

#: Events buffered between the caller and a stack task in each direction.
QUEUE_SIZE = 8

#: The one gRPC-reserved request header middleware may set through
#: ``scope["metadata"]`` (gRFC A6); the transport sends it as a raw header.
PREVIOUS_ATTEMPTS = "grpc-previous-rpc-attempts"

#: ``scope["extensions"]`` key where the transport records the connection's
#: :class:`~grpcasgi.peer.Peer` once the request went out.
PEER_EXTENSION = "peer"

#: ``scope["extensions"]`` key of a per-call ``wait_for_ready`` (absent: the
#: channel's default); middleware may set or change it.
WAIT_FOR_READY = "grpcasgi.wait_for_ready"

class ClientRequestMessageEvent(RequestMessageEvent, total=False):
    """A request message on a client stack; ``compress=False`` (only present
    when the caller passed it) sends this message uncompressed."""

    compress: bool


class ClientResponseMessageEvent(ResponseMessageEvent, total=False):
    """A response message on a client stack; ``compressed`` tells whether it
    arrived compressed (the stream's ``last_message_compressed``)."""

    compressed: bool


_REQUEST_END: RequestEndEvent = {"type": "grpc.request.end"}


def client_scope(
    channel: "Channel",
    path: str,
    cardinality: Cardinality,
    request_type: Any,
    reply_type: Any,
    deadline: Deadline | None,
    metadata: MetadataLike | None,
    encoding: str | None,
) -> ClientScope:
    """The scope of one outgoing call (``path`` is ``/package.Service/Method``)."""
    service, _, method = path[1:].rpartition("/")
    return {
        "type": "grpc.client",
        "grpcasgi": VERSION_INFO,
        "path": path,
        "service": service,
        "method": method,
        "cardinality": cardinality,
        "request_type": request_type,
        "reply_type": reply_type,
        "metadata": MultiDict(metadata) if metadata else MultiDict(),
        "deadline": deadline,
        "authority": channel._authority,
        "encoding": encoding if encoding != "identity" else None,
        "extensions": {},
        "state": {},
    }


class ClientStack:
    """A channel's middleware stack, built once, and the factory of its calls."""

    __slots__ = ("channel", "app")

    def __init__(self, channel: "Channel", middleware: Sequence[Middleware]) -> None:
        self.channel = channel
        self.app: ClientApp = build_stack(middleware, ChannelTransport(channel))

    def open(
        self,
        path: str,
        cardinality: Cardinality,
        request_type: Any,
        reply_type: Any,
        deadline: Deadline | None,
        metadata: MetadataLike | None,
        encoding: str | None,
        wait_for_ready: bool | None = None,
    ) -> "StackStream[Any, Any]":
        scope = client_scope(self.channel, path, cardinality, request_type, reply_type, deadline, metadata, encoding)
        if wait_for_ready is not None:
            scope["extensions"][WAIT_FOR_READY] = wait_for_ready
        return StackStream(self.channel, self.app, scope)


# -- the innermost app ---------------------------------------------------------


class ChannelTransport:
    """The innermost client app: one attempt of the call over the channel's connection.

    Uses a plain client :class:`~grpcasgi.client.Stream` built from the scope
    as middleware left it (path, metadata, deadline, encoding), so the wire
    behaviour is exactly that of a channel without middleware.
    """

    __slots__ = ("channel",)

    def __init__(self, channel: "Channel") -> None:
        self.channel = channel

    async def __call__(self, scope: ClientScope, receive: Receive, send: Send) -> None:
        cardinality = scope["cardinality"]
        metadata: MultiDict[MetadataValue] = scope["metadata"]
        extra: list[tuple[bytes, bytes]] | None = None
        if PREVIOUS_ATTEMPTS in metadata:
            metadata = MultiDict(metadata)
            value = metadata.popall(PREVIOUS_ATTEMPTS)[-1]
            raw = value.encode("ascii") if isinstance(value, str) else bytes(value)
            if not raw.isdigit():
                raise ValueError(f"{PREVIOUS_ATTEMPTS} must be a decimal number, got {value!r}")
            extra = [(PREVIOUS_ATTEMPTS.encode("ascii"), raw)]
        stream: Stream[Any, Any] = Stream(
            self.channel,
            scope["path"],
            cardinality,
            scope["request_type"],
            scope["reply_type"],
            deadline=scope["deadline"],
            metadata=metadata,
            compression=scope["encoding"],
            wait_for_ready=scope["extensions"].get(WAIT_FOR_READY),
        )
        stream._extra_headers = extra
        pump: asyncio.Task[BaseException | None] | None = None
        end: ResponseEndEvent
        try:
            try:
                if cardinality.client_streaming:
                    await stream.send_request()
                    pump = asyncio.get_running_loop().create_task(_pump(stream, receive))
                else:
                    # One request message; the request side is complete once it is sent.
                    event = await receive()
                    if event["type"] == "grpc.request.message":
                        await _send(stream, event, end=True)
                    else:
                        await stream.end()
                scope["extensions"][PEER_EXTENSION] = stream.peer
                await stream.recv_initial_metadata()
                h2 = stream._h2
                if h2 is None or h2.head is None or h2.head.trailers is None:  # not Trailers-Only
                    await send({"type": "grpc.response.start", "metadata": stream.initial_metadata})
                if cardinality.server_streaming:
                    while True:
                        message = await stream.recv_message()
                        if message is None:
                            break
                        await send(_reply(stream, message))
                else:
                    message = await stream.recv_message()
                    if message is not None:
                        await send(_reply(stream, message))
                        # Like UnaryUnaryMethod: further messages are not read.
                        await stream.recv_trailing_metadata()
            except GRPCError as exc:
                failure = _pump_failure(pump)
                if isinstance(failure, GRPCError):
                    exc = failure  # the request side failed first (e.g. message too large)
                elif failure is not None:
                    raise failure from None
                end = {
                    "type": "grpc.response.end",
                    "status": exc.status,
                    "message": exc.message,
                    "details": exc.details,
                    "metadata": stream.trailing_metadata,
                }
            else:
                trailers = stream._trailers
                end = {
                    "type": "grpc.response.end",
                    "status": Status.OK,
                    "message": trailers.message if trailers is not None else None,
                    "details": None,
                    "metadata": stream.trailing_metadata,
                }
        finally:
            if pump is not None and not pump.done():
                pump.cancel()
            if not stream._done:
                stream._cancel_h2()  # abandoned mid-call (cancelled, or an exception): reset it
        await send(end)


def _reply(stream: "Stream[Any, Any]", message: Any) -> ClientResponseMessageEvent:
    return {"type": "grpc.response.message", "message": message, "compressed": bool(stream.last_message_compressed)}


async def _send(stream: "Stream[Any, Any]", event: RequestMessageEvent, *, end: bool = False) -> None:
    if event.get("compress", True):
        await stream.send_message(event["message"], end=end)
    else:  # the caller asked for this message to go uncompressed
        await stream.send_message(event["message"], end=end, compress=False)


async def _pump(stream: "Stream[Any, Any]", receive: Receive) -> BaseException | None:
    """Move request events to the wire; returns (never raises) what stopped it early."""
    try:
        while True:
            event = await receive()
            if event["type"] == "grpc.request.message":
                await _send(stream, event)
            elif event["type"] == "grpc.request.end":
                await stream.end()
                return None
            else:
                await stream.cancel()
                return None
    except GRPCError as exc:
        _fail_stream(stream)
        return exc
    except Exception as exc:
        _fail_stream(stream)
        return exc


def _fail_stream(stream: "Stream[Any, Any]") -> None:
    # Wake the response reader: it sees CANCELLED and then asks the pump why.
    h2 = stream._h2
    if h2 is not None:
        h2.cancel()


def _pump_failure(pump: "asyncio.Task[BaseException | None] | None") -> BaseException | None:
    if pump is None or not pump.done() or pump.cancelled():
        return None
    return pump.result()


# -- the caller's side -----------------------------------------------------------


class _Pipe(Generic[_T]):
    """A single-producer single-consumer FIFO, bounded or not, that can be closed.

    Cheaper than ``asyncio.Queue`` (one future per wait, none when items are
    ready) and, once closed, ``put`` drops and ``get`` drains then returns None.
    """

    __slots__ = ("_items", "_limit", "_getter", "_putter", "closed")

    def __init__(self, limit: int | None) -> None:
        self._items: deque[_T] = deque()
        self._limit = limit
        self._getter: asyncio.Future[None] | None = None
        self._putter: asyncio.Future[None] | None = None
        self.closed = False

    def __len__(self) -> int:
        return len(self._items)

    def put_nowait(self, item: _T) -> None:
        if not self.closed:
            self._items.append(item)
            _wake(self._getter)

    async def put(self, item: _T) -> None:
        limit = self._limit
        while limit is not None and len(self._items) >= limit and not self.closed:
            self._putter = asyncio.get_running_loop().create_future()
            try:
                await self._putter
            finally:
                self._putter = None
        self.put_nowait(item)

    def peek(self) -> _T | None:
        return self._items[0] if self._items else None

    async def get(self) -> _T | None:
        while not self._items:
            if self.closed:
                return None
            self._getter = asyncio.get_running_loop().create_future()
            try:
                await self._getter
            finally:
                self._getter = None
        item = self._items.popleft()
        _wake(self._putter)
        return item

    async def wait_item(self) -> _T | None:
        """The next item without removing it; None once closed and drained."""
        while not self._items:
            if self.closed:
                return None
            self._getter = asyncio.get_running_loop().create_future()
            try:
                await self._getter
            finally:
                self._getter = None
        return self._items[0]

    def close(self) -> None:
        self.closed = True
        _wake(self._getter)
        _wake(self._putter)


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class StackStream(Stream[_Req, _Rep]):
    """A client call driven through the channel's middleware stack.

    Same API and semantics as the plain client :class:`~grpcasgi.client.Stream`
    (it is one, for ``isinstance`` and typing); the request/response methods
    turn into events for the stack instead of writing the HTTP/2 stream.
    Differences a caller can notice: a failure to connect or an expired
    deadline is reported by the first ``recv_*`` call (or ``async with``
    exit) rather than by ``send_request``/``send_message``, because the
    request only goes out once the stack runs.
    """

    def __init__(self, channel: "Channel", app: ClientApp, scope: ClientScope) -> None:
        super().__init__(
            channel,
            scope["path"],
            scope["cardinality"],
            scope["request_type"],
            scope["reply_type"],
            deadline=scope["deadline"],
            metadata=scope["metadata"],
            compression=scope["encoding"],
        )
        self.scope = scope
        self._app = app
        # Unary calls run inline once the request is complete; unbounded
        # queues are fine then (one request message, at most one response
        # message: ChannelTransport never reads a second one for them).
        self._inline = scope["cardinality"] is Cardinality.UNARY_UNARY
        limit = None if self._inline else QUEUE_SIZE
        self._requests: _Pipe[ReceiveEvent] = _Pipe(limit)
        self._responses: _Pipe[SendEvent] = _Pipe(limit)
        self._request_started = False
        self._request_ended = False
        self._request_eof = False
        self._running = False
        self._task: asyncio.Task[None] | None = None
        #: The caller's task while it runs a unary stack inline (for cancel() from elsewhere).
        self._inline_task: asyncio.Task[Any] | None = None
        self._cancelled_inline = False
        #: The end event the stack delivered (maybe not yet read by the caller).
        self._delivered_end: ResponseEndEvent | None = None
        #: The end the caller has reached: recv_* report it from now on.
        self._final: ResponseEndEvent | None = None
        #: A non-status exception that escaped the stack; re-raised to the caller.
        self._failure: BaseException | None = None

    # -- running the stack -------------------------------------------------------

    async def _receive(self) -> ReceiveEvent:
        if self._request_eof:
            return _REQUEST_END
        event = await self._requests.get()
        if event is None or event["type"] == "grpc.request.end":
            # Ended (or the call is over): from now on every receive says so.
            self._request_eof = True
            return _REQUEST_END
        return event

    async def _send(self, event: SendEvent) -> None:
        if self._delivered_end is not None:
            log.warning("%s: client middleware sent %s after the call ended; dropped", self.scope["path"], event["type"])
            return
        if event["type"] == "grpc.response.end":
            self._delivered_end = event
        elif event["type"] == "grpc.response.start":
            self.peer = self.scope["extensions"].get(PEER_EXTENSION, self.peer)
        await self._responses.put(event)

    async def _run_stack(self) -> None:
        try:
            await self._app(self.scope, self._receive, self._send)
        except GRPCError as exc:
            if self._delivered_end is None:
                self._delivered_end = {
                    "type": "grpc.response.end",
                    "status": exc.status,
                    "message": exc.message,
                    "details": exc.details,
                    "metadata": None,
                }
                self._responses.put_nowait(self._delivered_end)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self._delivered_end is None:
                self._failure = exc
            else:
                log.exception("%s: client middleware failed after the call ended", self.scope["path"])
        else:
            if self._delivered_end is None:
                log.error("%s: the client middleware stack returned without ending the call", self.scope["path"])
                self._delivered_end = {
                    "type": "grpc.response.end",
                    "status": Status.UNKNOWN,
                    "message": "client middleware returned without a status",
                }
                self._responses.put_nowait(self._delivered_end)
        finally:
            self.peer = self.scope["extensions"].get(PEER_EXTENSION, self.peer)
            self._requests.close()
            self._responses.close()

    async def _ensure_running(self) -> None:
        if not self._request_started:
            raise ProtocolError("send the request first")
        if self._running or self._final is not None:  # running, or cancelled before it ran
            return
        self._running = True
        if self._inline and self._request_ended:
            await self._run_inline()
        else:
            self._task = asyncio.get_running_loop().create_task(self._run_stack())

    async def _run_inline(self) -> None:
        task = self._inline_task = asyncio.current_task()
        try:
            await self._run_stack()
        except asyncio.CancelledError:
            if not self._cancelled_inline:
                raise
            # cancel() from another task stopped the stack; the caller's
            # recv_* reports CANCELLED like the plain stream does.
            uncancel = getattr(task, "uncancel", None)
            if uncancel is not None:
                uncancel()
        finally:
            self._inline_task = None

    async def _next_event(self) -> SendEvent:
        event = await self._responses.get()
        if event is None:
            return self._closed_end()
        return event

    def _closed_end(self) -> SendEvent:
        if self._failure is not None:
            raise self._failure
        if self._final is not None:
            return self._final
        # Closed without an end: the stack task was cancelled from outside.
        return {"type": "grpc.response.end", "status": Status.CANCELLED, "message": "call cancelled"}

    def _reach_end(self, event: ResponseEndEvent) -> None:
        self._final = event
        self._done = True
        self.trailing_metadata = MultiDict(event.get("metadata") or ())
        if self.initial_metadata is None:
            self.initial_metadata = MultiDict()

    def _raise_status(self) -> None:
        final = self._final
        assert final is not None
        if final["status"] is not Status.OK:
            raise GRPCError(final["status"], final.get("message"), final.get("details"))

    # -- request side ----------------------------------------------------------

    async def send_request(self, *, end: bool = False) -> None:
        if self._request_started:
            raise ProtocolError("request was already sent")
        self._request_started = True
        if end:
            self._request_ended = True
            self._requests.put_nowait(_REQUEST_END)
        if not self._inline:
            await self._ensure_running()

    async def send_message(self, message: _Req, *, end: bool = False, compress: bool = True) -> None:
        if not self._request_started:
            await self.send_request()
        if self._request_ended:
            raise ProtocolError("the request stream was already ended")
        ended = self._delivered_end
        if ended is not None:
            if ended["status"] is not Status.OK:
                raise GRPCError(ended["status"], ended.get("message"), ended.get("details"))
            return  # the server already finished the call; like the plain stream, nothing more is read
        event: ClientRequestMessageEvent = {"type": "grpc.request.message", "message": message, "size": self._size(message)}
        if not compress:
            event["compress"] = False
        await self._requests.put(event)
        if end:
            self._request_ended = True
            await self._requests.put(_REQUEST_END)

    def _size(self, message: Any) -> int:
        codec = self._channel._codec
        if type(codec) is ProtoCodec:
            byte_size = getattr(message, "ByteSize", None)
            if byte_size is not None:
                return int(byte_size())
        return len(codec.encode(message, self._request_type))

    async def end(self) -> None:
        if not self._request_started:
            await self.send_request(end=True)
            return
        if self._request_ended:
            raise ProtocolError("the request stream was already ended")
        self._request_ended = True
        await self._requests.put(_REQUEST_END)

    # -- response side ---------------------------------------------------------

    async def recv_initial_metadata(self) -> None:
        await self._ensure_running()
        if self.initial_metadata is not None:
            return
        event = await self._responses.wait_item()
        if event is None:
            self._closed_end()
        elif event["type"] == "grpc.response.start":
            await self._responses.get()
            self.initial_metadata = MultiDict(event.get("metadata") or ())
            return
        # Trailers-Only (the end comes first) or a middleware that skipped the start.
        self.initial_metadata = MultiDict()

    async def recv_message(self) -> _Rep | None:
        if self.initial_metadata is None:
            await self.recv_initial_metadata()
        while self._final is None:
            event = await self._next_event()
            if event["type"] == "grpc.response.message":
                message: _Rep = event["message"]
                compressed = event.get("compressed")
                if isinstance(compressed, bool):
                    self.last_message_compressed = compressed
                return message
            if event["type"] == "grpc.response.end":
                self._reach_end(event)
        self._raise_status()
        return None

    async def recv_trailing_metadata(self) -> None:
        await self._ensure_running()
        while self._final is None:
            event = await self._next_event()
            if event["type"] == "grpc.response.end":
                self._reach_end(event)
        self._raise_status()

    async def cancel(self) -> None:
        if self._final is None:
            self._reach_end({"type": "grpc.response.end", "status": Status.CANCELLED, "message": "call cancelled"})
        task = self._task
        if task is not None and not task.done():
            task.cancel()
        inline = self._inline_task
        if inline is not None and inline is not asyncio.current_task():
            self._cancelled_inline = True
            inline.cancel()
        self._requests.close()
        self._responses.close()

    # -- lifecycle ---------------------------------------------------------------

    async def __aenter__(self) -> "StackStream[_Req, _Rep]":
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> bool | None:
        try:
            if exc_type is not None:
                if self._running and self._final is None:
                    await self.cancel()
                return None
            if not self._request_started:
                return None
            if self._final is None and self._failure is None:
                await self.recv_trailing_metadata()
            return None
        finally:
            await self._reap()

    async def _reap(self) -> None:
        """Let the stack task finish (spans end, metrics record) before the call returns."""
        task = self._task
        if task is None or task.done():
            return
        if self._final is None or self._failure is not None:
            task.cancel()
        try:
            await asyncio.wait((task,))
        except asyncio.CancelledError:
            task.cancel()
            raise

    def _finish(self) -> None:  # the plain stream's HTTP/2 bookkeeping; nothing to release here
        return None

    def __repr__(self) -> str:
        return f"<StackStream {self.scope['path']}>"

