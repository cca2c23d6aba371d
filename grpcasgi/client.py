"""The client: :class:`Channel`, the call :class:`Stream` and generated-stub method objects.

The API is grpclib's, so generated stubs and calling code move over by
changing imports::

    async with Channel("127.0.0.1", 50051) as channel:
        reply = await GreeterStub(channel).SayHello(HelloRequest(name="World"))
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import ssl as _ssl
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Generic, Iterable, Sequence, TypeVar

from multidict import MultiDict

from .call import Middleware
from .codec import CodecBase, ProtoCodec, StatusDetailsCodecBase, default_status_details_codec
from .config import Configuration
from .const import Cardinality
from .deadline import Deadline, current_deadline, earliest
from .exceptions import GRPCError, ProtocolError
from .peer import Peer
from .protocol.compression import SUPPORTED_ENCODINGS, DecompressedTooLarge, decompress
from .protocol.compression import compress as _compress
from .protocol.content_type import content_type_for
from .protocol.framing import frame_header
from .protocol.headers import TrailersInfo, request_headers
from .protocol.metadata import MetadataLike, MetadataValue, encode_metadata
from .protocol.status import Status
from .timers import DeadlineTimer, deadline_timers
from .transport.base import HIGH_WATER
from .transport.h2client import H2ClientProtocol, H2ClientStream

if TYPE_CHECKING:
    from .client_stack import ClientStack

__all__ = [
    "Channel",
    "Stream",
    "UnaryUnaryMethod",
    "UnaryStreamMethod",
    "StreamUnaryMethod",
    "StreamStreamMethod",
]

log = logging.getLogger("grpcasgi.client")

_Req = TypeVar("_Req")
_Rep = TypeVar("_Rep")
_T = TypeVar("_T")
_Result = TypeVar("_Result")

USER_AGENT = "grpc-python-grpcasgi/0.1.0"


def _default_ssl_context() -> _ssl.SSLContext:
    try:
        import certifi

        ctx = _ssl.create_default_context(cafile=certifi.where())
    except ImportError:
        ctx = _ssl.create_default_context()
    ctx.set_alpn_protocols(["h2"])
    return ctx


class Channel:
    """A client connection to one server, opened on first use and reopened after loss.

    ``ssl=True`` uses a verifying default context (certifi's roots when
    installed); pass an ``SSLContext`` for custom roots or client certificates.

    A failed connect is retried with exponential backoff (gRPC's connection
    backoff, see :class:`~grpcasgi.config.Configuration`): while the wait
    runs, calls fail UNAVAILABLE at once instead of hammering a dead
    server, unless they *wait for ready* (``wait_for_ready=True`` here for
    every call, or per call): then they wait for a connection until their
    deadline. A connection lost after it was established is reopened on
    the next call without waiting.
    """

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        path: str | None = None,
        ssl: _ssl.SSLContext | bool | None = None,
        config: Configuration | None = None,
        codec: CodecBase | None = None,
        status_details_codec: StatusDetailsCodecBase | None = None,
        compression: str | None = None,
        server_hostname: str | None = None,
        authority: str | None = None,
        middleware: Sequence[Middleware] | None = None,
        wait_for_ready: bool = False,
    ) -> None:
        if path is not None and (host is not None or port is not None):
            raise ValueError("path cannot be combined with host or port")
        self._host = host if host is not None else "127.0.0.1"
        self._port = port if port is not None else 50051
        self._path = path
        if ssl is True:
            ssl = _default_ssl_context()
        elif ssl is False:
            ssl = None
        elif ssl is not None:
            ssl.set_alpn_protocols(["h2"])
        self._ssl: _ssl.SSLContext | None = ssl
        self._server_hostname = server_hostname
        self._config = config or Configuration()
        self._codec = codec or ProtoCodec()
        self._content_type = content_type_for(self._codec.__content_subtype__)
        self._status_details_codec = status_details_codec or default_status_details_codec()
        if compression is not None and compression not in SUPPORTED_ENCODINGS:
            raise ValueError(f"unsupported compression {compression!r}; supported: {SUPPORTED_ENCODINGS}")
        self._compression = compression
        self._scheme = "https" if self._ssl is not None else "http"
        # The :authority of every request: grpcio's "grpc.default_authority".
        self._authority = authority or ("localhost" if path is not None else _authority(self._host, self._port))
        self._user_agent = self._config.user_agent or USER_AGENT
        self._protocol: H2ClientProtocol | None = None
        self._connecting: asyncio.Future[H2ClientProtocol] | None = None
        self._closed = False
        self._wait_for_ready = wait_for_ready
        # Connection backoff: current wait, the loop time before which no
        # connect is attempted, the error calls get meanwhile, and a future
        # close() resolves to wake calls waiting for ready.
        self._backoff: float | None = None
        self._retry_at = 0.0
        self._connect_error: GRPCError | None = None
        self._close_waiter: asyncio.Future[None] | None = None
        #: Replaces the socket connect when set: called with the protocol
        #: factory, returns the connected protocol (``grpcasgi.testing.ChannelFor``
        #: wires the connection to an in-process server this way).
        self._connector: Callable[[Callable[[], H2ClientProtocol]], Awaitable[H2ClientProtocol]] | None = None
        #: Client middleware (first outermost). Without any, calls take the
        #: direct path below; with some, ``request`` returns a stack-driven
        #: stream (``client_stack.StackStream``) with the same API.
        self._middleware = list(middleware or ())
        self._stack: ClientStack | None = None
        if self._middleware:
            from .client_stack import ClientStack  # imports this module

            self._stack = ClientStack(self, self._middleware)

    def __repr__(self) -> str:
        where = self._path if self._path is not None else self._authority
        return f"Channel({where!r}, {self._scheme})"

    @property
    def config(self) -> Configuration:
        return self._config

    @property
    def middleware(self) -> list[Middleware]:
        """The client middleware this channel's calls pass through (a copy)."""
        return list(self._middleware)

    async def __connect__(self, *, wait_for_ready: bool | None = None) -> H2ClientProtocol:
        """The open connection, connecting if needed (with backoff after failures).

        ``wait_for_ready`` (default: the channel's) waits through failed
        connects and backoff until a connection is up; the caller bounds the
        wait (the call's deadline).
        """
        wait = self._wait_for_ready if wait_for_ready is None else wait_for_ready
        loop = asyncio.get_running_loop()
        while True:
            proto = self._protocol
            if proto is not None and proto.usable:
                return proto
            if self._closed:
                raise GRPCError(Status.UNAVAILABLE, "channel is closed")
            delay = self._retry_at - loop.time()
            if delay > 0 and self._connecting is None:
                if not wait:
                    error = self._connect_error
                    message = error.message if error is not None else "connect failed"
                    raise GRPCError(Status.UNAVAILABLE, f"{message} (next attempt in {delay:.2f} s)")
                await self._sleep(delay)
                continue
            if self._connecting is None:
                self._connecting = asyncio.ensure_future(self._connect())
            connecting = self._connecting
            try:
                return await asyncio.shield(connecting)
            except GRPCError:
                if not wait or self._closed:
                    raise
            finally:
                if connecting.done() and self._connecting is connecting:
                    self._connecting = None

    async def _sleep(self, delay: float) -> None:
        """Wait out the backoff; close() ends the wait early."""
        if self._close_waiter is None:
            self._close_waiter = asyncio.get_running_loop().create_future()
        await asyncio.wait([self._close_waiter], timeout=delay)

    def _connect_failed(self, error: GRPCError) -> None:
        cfg = self._config
        backoff = self._backoff
        backoff = cfg.reconnect_initial_backoff if backoff is None else backoff * cfg.reconnect_backoff_multiplier
        backoff = min(backoff, cfg.reconnect_max_backoff)
        self._backoff = backoff
        jitter = cfg.reconnect_jitter
        self._retry_at = asyncio.get_running_loop().time() + backoff * random.uniform(1 - jitter, 1 + jitter)
        self._connect_error = error

    async def _connect(self) -> H2ClientProtocol:
        loop = asyncio.get_running_loop()

        def factory() -> H2ClientProtocol:
            return H2ClientProtocol(loop, self._config, self._on_lost)

        where = self._path or f"{self._host}:{self._port}"
        try:
            if self._connector is not None:
                proto = await self._connector(factory)
            elif self._path is not None:
                _, proto = await asyncio.wait_for(
                    loop.create_unix_connection(
                        factory,
                        self._path,
                        ssl=self._ssl,
                        server_hostname=self._server_hostname or ("localhost" if self._ssl else None),
                    ),
                    self._config.connect_timeout,
                )
            else:
                _, proto = await asyncio.wait_for(
                    loop.create_connection(
                        factory,
                        self._host,
                        self._port,
                        ssl=self._ssl,
                        server_hostname=(self._server_hostname or self._host) if self._ssl else None,
                    ),
                    self._config.connect_timeout,
                )
        except (OSError, _ssl.SSLError, asyncio.TimeoutError) as exc:
            error = GRPCError(Status.UNAVAILABLE, f"failed to connect to {where}: {exc or type(exc).__name__}")
            self._connect_failed(error)
            raise error from exc
        self._backoff = None
        self._retry_at = 0.0
        self._connect_error = None
        if self._ssl is not None:
            ssl_object = proto.transport.get_extra_info("ssl_object") if proto.transport else None
            if ssl_object is not None and ssl_object.selected_alpn_protocol() != "h2":
                proto.close()
                raise GRPCError(Status.UNAVAILABLE, f"{where} did not negotiate HTTP/2 (ALPN h2)")
        if self._closed:
            proto.close()
            raise GRPCError(Status.UNAVAILABLE, "channel is closed")
        self._protocol = proto
        return proto

    def _on_lost(self, proto: H2ClientProtocol) -> None:
        if self._protocol is proto:
            self._protocol = None

    def request(
        self,
        name: str,
        cardinality: Cardinality,
        request_type: Any,
        reply_type: Any,
        *,
        timeout: float | None = None,
        deadline: Deadline | None = None,
        metadata: MetadataLike | None = None,
        compression: str | None = None,
        wait_for_ready: bool | None = None,
    ) -> "Stream[Any, Any]":
        """Open a call; ``wait_for_ready`` (default: the channel's) waits for a connection until the deadline."""
        if timeout is not None:
            deadline = earliest(deadline, Deadline.from_timeout(timeout))
        if self._config.propagate_deadline:
            deadline = earliest(deadline, current_deadline.get())
        if compression is not None and compression not in SUPPORTED_ENCODINGS:
            raise ValueError(f"unsupported compression {compression!r}; supported: {SUPPORTED_ENCODINGS}")
        if self._stack is not None:
            return self._stack.open(
                name,
                cardinality,
                request_type,
                reply_type,
                deadline,
                metadata,
                compression if compression is not None else self._compression,
                wait_for_ready,
            )
        return Stream(
            self,
            name,
            cardinality,
            request_type,
            reply_type,
            deadline=deadline,
            metadata=metadata,
            compression=compression if compression is not None else self._compression,
            wait_for_ready=wait_for_ready,
        )

    def close(self) -> None:
        self._closed = True
        if self._close_waiter is not None and not self._close_waiter.done():
            self._close_waiter.set_result(None)
        connecting = self._connecting
        if connecting is not None and not connecting.done():
            # A connect nobody waits for any more (callers hit their
            # deadlines) would otherwise outlive the channel.
            connecting.cancel()
        if self._protocol is not None:
            self._protocol.close()
            self._protocol = None

    async def __aenter__(self) -> "Channel":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        proto = self._protocol
        self.close()
        if proto is not None:
            try:
                await asyncio.wait_for(asyncio.shield(proto.closed), 5)
            except asyncio.TimeoutError:
                pass


def _authority(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


class Stream(Generic[_Req, _Rep]):
    """One client call (grpclib's client ``Stream``)."""

    def __init__(
        self,
        channel: Channel,
        method: str,
        cardinality: Cardinality,
        request_type: Any,
        reply_type: Any,
        *,
        deadline: Deadline | None,
        metadata: MetadataLike | None,
        compression: str | None,
        wait_for_ready: bool | None = None,
    ) -> None:
        self._channel = channel
        self._method = method
        self._wait_for_ready = wait_for_ready
        self._cardinality = cardinality
        self._request_type = request_type
        self._reply_type = reply_type
        self.deadline = deadline
        self._metadata = metadata
        self._compression = compression if compression != "identity" else None
        self._h2: H2ClientStream | None = None
        self._proto: H2ClientProtocol | None = None
        self._timer: DeadlineTimer | None = None
        self._deadline_hit = False
        self._end_sent = False
        self._cancelled = False
        self._done = False
        self.initial_metadata: MultiDict[MetadataValue] | None = None
        self.trailing_metadata: MultiDict[MetadataValue] | None = None
        self.peer: Peer | None = None
        self._trailers: TrailersInfo | None = None
        #: Whether the last reply arrived compressed (None before any reply).
        self.last_message_compressed: bool | None = None
        #: Pre-encoded request headers outside the application metadata rules
        #: (the retry middleware's ``grpc-previous-rpc-attempts``).
        self._extra_headers: list[tuple[bytes, bytes]] | None = None

    async def __aenter__(self) -> "Stream[_Req, _Rep]":
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> bool | None:
        try:
            if exc_type is not None:
                if self._h2 is not None and not self._done:
                    self._cancel_h2()
                return None
            if self._h2 is None:
                return None
            if self._trailers is None and not self._done:
                await self.recv_trailing_metadata()
            return None
        finally:
            self._finish()

    # -- request side ----------------------------------------------------------

    async def send_request(self, *, end: bool = False) -> None:
        """Open the HTTP/2 stream and send the request headers."""
        if self._h2 is not None:
            raise ProtocolError("request was already sent")
        deadline = self.deadline
        timeout = None
        if deadline is not None:
            timeout = deadline.time_remaining()
            if timeout <= 0:
                self._done = True
                raise GRPCError(Status.DEADLINE_EXCEEDED, "Deadline exceeded before the call started")
        channel = self._channel
        encoded = encode_metadata(self._metadata) if self._metadata else None
        if self._extra_headers:
            encoded = [*(encoded or ()), *self._extra_headers]
        proto = channel._protocol
        if proto is None or not proto.usable:
            proto = await self._within_deadline(
                channel.__connect__(wait_for_ready=self._wait_for_ready), "while connecting"
            )
            if deadline is not None:
                # Time spent connecting counts: the server gets what is left.
                timeout = deadline.time_remaining()
        headers = request_headers(
            path=self._method,
            authority=channel._authority,
            scheme=channel._scheme,
            content_type=channel._content_type,
            timeout=timeout,
            encoding=self._compression,
            user_agent=channel._user_agent,
            metadata=encoded,
        )
        limit = proto.conn.remote_settings.max_header_list_size
        if limit is not None:
            size = sum(len(name) + len(value) + 32 for name, value in headers)  # RFC 9113 6.5.2
            if size > limit:
                # Sent anyway, the server would fail the whole connection
                # (h2: ENHANCE_YOUR_CALM), taking every other call with it.
                self._done = True
                raise GRPCError(
                    Status.RESOURCE_EXHAUSTED,
                    f"request metadata ({size} bytes) exceeds the server's SETTINGS_MAX_HEADER_LIST_SIZE ({limit})",
                )
        opening = proto.open_stream(headers, channel._config.max_receive_message_length)
        if proto.has_free_slot():
            self._h2 = await opening
        else:
            self._h2 = await self._within_deadline(opening, "waiting for a stream (MAX_CONCURRENT_STREAMS)")
        self._proto = proto
        self.peer = proto.peer
        if deadline is not None:
            # Shared slot timers: most deadlines are disarmed long before (timers.py).
            self._timer = deadline_timers(proto.loop).call_later(deadline.time_remaining(), self._on_deadline)
        if end:
            self._end_sent = True
            self._h2.writer.end()

    async def _within_deadline(self, aw: Awaitable[_T], what: str) -> _T:
        """Await ``aw`` (connecting, waiting for a stream slot) within the call's deadline.

        The deadline timer only starts once the stream is open; without this a
        hanging connect or a full server held the call past its deadline.
        """
        deadline = self.deadline
        if deadline is None:
            return await aw
        try:
            return await asyncio.wait_for(aw, deadline.time_remaining())
        except asyncio.TimeoutError:
            self._done = True
            raise GRPCError(Status.DEADLINE_EXCEEDED, f"Deadline exceeded {what}") from None

    def _on_deadline(self) -> None:
        self._timer = None
        if self._h2 is not None and not self._done:
            self._deadline_hit = True
            self._h2.cancel()
            self._h2.error = GRPCError(Status.DEADLINE_EXCEEDED, "Deadline exceeded")

    async def send_message(self, message: _Req, *, end: bool = False, compress: bool = True) -> None:
        """Send a request message; ``compress=False`` sends it uncompressed even when the call compresses."""
        if self._h2 is None:
            await self.send_request()
        assert self._h2 is not None
        if self._end_sent:
            raise ProtocolError("the request stream was already ended")
        if self._h2.error is not None:
            raise self._h2.error
        if self._h2.trailers is not None:
            # The server already ended the call (it may answer before reading
            # everything): the message could only be discarded. The call's
            # outcome is what the receiving side reports.
            if end:
                self._end_sent = True
            return
        data = self._channel._codec.encode(message, self._request_type)
        limit = self._channel._config.max_send_message_length
        if limit is not None and len(data) > limit:
            raise GRPCError(Status.RESOURCE_EXHAUSTED, f"Sent message larger than max ({len(data)} vs. {limit})")
        writer = self._h2.writer
        if self._compression is not None and compress:
            data = _compress(self._compression, data)
            writer.write(frame_header(len(data), True), data)
        else:
            writer.write(frame_header(len(data)), data)
        if end:
            self._end_sent = True
            writer.end()
        if writer.size > HIGH_WATER:
            await self._drain()

    async def _drain(self) -> None:
        assert self._h2 is not None
        try:
            await self._h2.writer.drain()
        except Exception:
            if self._h2.error is not None:
                raise self._h2.error from None
            if self._h2.trailers is not None:
                return  # the server answered meanwhile (see send_message)
            raise

    async def end(self) -> None:
        """Half-close: the server sees the end of the request stream."""
        if self._h2 is None:
            await self.send_request(end=True)
            return
        if self._end_sent:
            raise ProtocolError("the request stream was already ended")
        self._end_sent = True
        self._h2.writer.end()

    # -- response side ---------------------------------------------------------

    async def recv_initial_metadata(self) -> None:
        if self._h2 is None:
            raise ProtocolError("send the request first")
        if self.initial_metadata is not None:
            return
        try:
            head = await self._h2.wait_head()
        except GRPCError:
            self._error_surfaced()
            raise
        self.initial_metadata = MultiDict(head.metadata)
        if head.codec is not None and head.codec != self._channel._codec.__content_subtype__ and head.trailers is None:
            self._fail_call(GRPCError(Status.UNKNOWN, f"unexpected response content-type (codec {head.codec!r})"))

    async def recv_message(self) -> _Rep | None:
        """The next reply, or None at the end; raises :class:`GRPCError` for a non-OK status."""
        if self.initial_metadata is None:
            await self.recv_initial_metadata()
        assert self._h2 is not None
        try:
            item = await self._h2.read_message()
        except GRPCError:
            self._error_surfaced()
            raise
        if item is None:
            await self._process_trailers()
            return None
        compressed, payload = item
        self.last_message_compressed = compressed
        if compressed:
            head = self._h2.head
            encoding = head.encoding if head is not None else None
            if encoding is None or encoding == "identity":
                self._fail_call(GRPCError(Status.INTERNAL, "compressed message without grpc-encoding"))
            try:
                payload = decompress(encoding, payload, self._channel._config.max_receive_message_length)  # type: ignore[arg-type]
            except DecompressedTooLarge as exc:
                self._fail_call(GRPCError(Status.RESOURCE_EXHAUSTED, str(exc)))
            except ValueError as exc:
                self._fail_call(GRPCError(Status.INTERNAL, str(exc)))
        try:
            reply: _Rep = self._channel._codec.decode(payload, self._reply_type)
        except Exception as exc:
            self._fail_call(GRPCError(Status.INTERNAL, f"could not decode response message: {exc}"))
        return reply

    def _error_surfaced(self) -> None:
        # The call's error (reset, lost connection, deadline) reached the
        # caller: the call is over. Without this, leaving ``async with``
        # raised the same error a second time, out of ``__aexit__``.
        self._done = True
        self._finish()

    def _fail_call(self, error: GRPCError) -> None:
        self._cancel_h2()
        raise error

    def __aiter__(self) -> AsyncIterator[_Rep]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[_Rep]:
        while True:
            message = await self.recv_message()
            if message is None:
                return
            yield message

    async def recv_trailing_metadata(self) -> None:
        if self._h2 is None:
            raise ProtocolError("send the request first")
        if self._trailers is None:
            try:
                await self._h2.wait_trailers()
            except GRPCError:
                self._error_surfaced()
                raise
        await self._process_trailers()

    async def _process_trailers(self) -> None:
        assert self._h2 is not None
        info = self._trailers
        if info is None:
            info = self._trailers = await self._h2.wait_trailers()
            self.trailing_metadata = MultiDict(info.metadata)
            self._done = True
            if self.initial_metadata is None:
                self.initial_metadata = MultiDict()
            self._finish()
        if info.status is not Status.OK:
            details = None
            codec = self._channel._status_details_codec
            if info.details is not None and codec is not None:
                try:
                    details = codec.decode(info.status, info.message, info.details)
                except Exception as exc:
                    log.warning("could not decode grpc-status-details-bin: %r", exc)
            raise GRPCError(info.status, info.message, details)

    async def cancel(self) -> None:
        """Reset the stream (RST_STREAM CANCEL); the server's handler is cancelled."""
        self._cancel_h2()

    def _cancel_h2(self) -> None:
        if self._h2 is not None and not self._done:
            self._cancelled = True
            self._h2.cancel()
        self._done = True
        self._finish()

    def _finish(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._h2 is not None and self._proto is not None and self._done:
            self._proto.release(self._h2)


class _Method(Generic[_Req, _Rep, _Result]):
    """What the four method classes of generated stubs share.

    The call's target and :meth:`open`; a call returns ``_Result``, which
    ``_result`` reads from the call's stream (the one reply, or all of them).
    The two request shapes below each write ``__call__`` once, since their
    signatures differ (``message`` or ``messages``); the four public classes
    only name their cardinality and their ``_result``.
    """

    _cardinality: Cardinality
    _result: Callable[[Stream[_Req, _Rep]], Awaitable[_Result]]

    def __init__(self, channel: Channel, name: str, request_type: Any, reply_type: Any) -> None:
        self.channel = channel
        self.name = name
        self.request_type = request_type
        self.reply_type = reply_type

    def open(
        self,
        *,
        timeout: float | None = None,
        metadata: MetadataLike | None = None,
        deadline: Deadline | None = None,
        compression: str | None = None,
        wait_for_ready: bool | None = None,
    ) -> Stream[_Req, _Rep]:
        return self.channel.request(
            self.name,
            self._cardinality,
            self.request_type,
            self.reply_type,
            timeout=timeout,
            deadline=deadline,
            metadata=metadata,
            compression=compression,
            wait_for_ready=wait_for_ready,
        )


async def _unary_reply(stream: Stream[Any, _Rep]) -> _Rep:
    """The one reply of a unary-response call, read through to its OK status.

    No reply or a second one breaks the response cardinality: UNIMPLEMENTED,
    as the gRPC status code table says (a second reply used to be dropped
    silently; grpcio's own client hangs on it).
    """
    reply = await stream.recv_message()
    if reply is None:  # the status was OK, or recv_message raised it
        raise GRPCError(Status.UNIMPLEMENTED, "the server sent no reply message")
    if await stream.recv_message() is not None:
        await stream.cancel()
        raise GRPCError(Status.UNIMPLEMENTED, "the server sent more than one reply to a unary call")
    return reply


async def _all_replies(stream: Stream[Any, _Rep]) -> list[_Rep]:
    """Every reply of a streaming-response call, read through to its OK status."""
    return [reply async for reply in stream]


class _UnaryRequestMethod(_Method[_Req, _Rep, _Result]):
    """A call that sends one request message (and ends the request with it)."""

    async def __call__(
        self,
        message: _Req,
        *,
        timeout: float | None = None,
        metadata: MetadataLike | None = None,
        deadline: Deadline | None = None,
        compression: str | None = None,
        wait_for_ready: bool | None = None,
    ) -> _Result:
        async with self.open(
            timeout=timeout, metadata=metadata, deadline=deadline, compression=compression, wait_for_ready=wait_for_ready
        ) as stream:
            await stream.send_message(message, end=True)
            return await self._result(stream)


class _StreamRequestMethod(_Method[_Req, _Rep, _Result]):
    """A call that streams its request messages, then ends the request."""

    async def __call__(
        self,
        messages: Iterable[_Req],
        *,
        timeout: float | None = None,
        metadata: MetadataLike | None = None,
        deadline: Deadline | None = None,
        compression: str | None = None,
        wait_for_ready: bool | None = None,
    ) -> _Result:
        async with self.open(
            timeout=timeout, metadata=metadata, deadline=deadline, compression=compression, wait_for_ready=wait_for_ready
        ) as stream:
            await stream.send_request()
            for message in messages:
                await stream.send_message(message)
            await stream.end()
            return await self._result(stream)


class UnaryUnaryMethod(_UnaryRequestMethod[_Req, _Rep, _Rep]):
    _cardinality = Cardinality.UNARY_UNARY
    _result = staticmethod(_unary_reply)


class UnaryStreamMethod(_UnaryRequestMethod[_Req, _Rep, list[_Rep]]):
    _cardinality = Cardinality.UNARY_STREAM
    _result = staticmethod(_all_replies)


class StreamUnaryMethod(_StreamRequestMethod[_Req, _Rep, _Rep]):
    _cardinality = Cardinality.STREAM_UNARY
    _result = staticmethod(_unary_reply)


class StreamStreamMethod(_StreamRequestMethod[_Req, _Rep, list[_Rep]]):
    _cardinality = Cardinality.STREAM_STREAM
    _result = staticmethod(_all_replies)
