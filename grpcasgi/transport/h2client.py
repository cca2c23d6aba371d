"""The client's HTTP/2 connection over ``h2``: many concurrent calls, one socket.

Each call is an :class:`H2ClientStream`, a passive buffer the connection
feeds; the caller's task pulls headers, messages and trailers from it, so a
call costs no task of its own. Writes share the coalescing of
:class:`~grpcasgi.transport.base.H2Protocol`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, cast

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from ..config import Configuration
from ..exceptions import GRPCError
from ..peer import Peer
from ..protocol.framing import HEADER_SIZE, FramingError, MessageDecoder, MessageTooLarge
from ..protocol.headers import ResponseHead, TrailersInfo, parse_response_headers, parse_trailers
from ..protocol.status import Status
from .base import H2Protocol, StreamWriter
from .hpack_cache import CachingEncoder
from .lifecycle import ClientLifecycle

__all__ = ["H2ClientProtocol", "H2ClientStream", "status_for_reset"]

log = logging.getLogger("grpcasgi.client")

_H2_CONFIG = h2.config.H2Configuration(
    client_side=True,
    header_encoding=None,
    validate_outbound_headers=False,
    normalize_outbound_headers=False,
    validate_inbound_headers=True,
)



class _H2Connection(h2.connection.H2Connection):
    """h2 treats every received GOAWAY as the end of the connection (state
    CLOSED, outbound buffer dropped: python-hyper/h2#1181), so a server's
    graceful shutdown would kill the calls it promised to finish. A NO_ERROR
    GOAWAY only forbids new streams (RFC 9113 section 6.8): report it and
    keep the connection open; ``_on_goaway`` stops using it for new calls.
    """

    def _receive_goaway_frame(self, frame: Any) -> tuple[list[Any], list[Any]]:
        if frame.error_code != 0:
            result: tuple[list[Any], list[Any]] = super()._receive_goaway_frame(frame)
            return result
        event = h2.events.ConnectionTerminated()
        event.error_code = h2.errors.ErrorCodes.NO_ERROR
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]


_RESET_STATUS = {
    h2.errors.ErrorCodes.NO_ERROR: Status.INTERNAL,
    h2.errors.ErrorCodes.PROTOCOL_ERROR: Status.INTERNAL,
    h2.errors.ErrorCodes.INTERNAL_ERROR: Status.INTERNAL,
    h2.errors.ErrorCodes.FLOW_CONTROL_ERROR: Status.INTERNAL,
    h2.errors.ErrorCodes.SETTINGS_TIMEOUT: Status.INTERNAL,
    h2.errors.ErrorCodes.FRAME_SIZE_ERROR: Status.INTERNAL,
    h2.errors.ErrorCodes.REFUSED_STREAM: Status.UNAVAILABLE,
    h2.errors.ErrorCodes.CANCEL: Status.CANCELLED,
    h2.errors.ErrorCodes.COMPRESSION_ERROR: Status.INTERNAL,
    h2.errors.ErrorCodes.CONNECT_ERROR: Status.INTERNAL,
    h2.errors.ErrorCodes.ENHANCE_YOUR_CALM: Status.RESOURCE_EXHAUSTED,
    h2.errors.ErrorCodes.INADEQUATE_SECURITY: Status.PERMISSION_DENIED,
}


def status_for_reset(code: int) -> Status:
    """RST_STREAM error code → gRPC status (PROTOCOL-HTTP2.md, "Errors")."""
    try:
        return _RESET_STATUS.get(h2.errors.ErrorCodes(code), Status.INTERNAL)
    except ValueError:
        return Status.INTERNAL


class H2ClientStream:
    """Receive-side state of one call, fed by the connection."""

    __slots__ = (
        "proto",
        "stream_id",
        "writer",
        "decoder",
        "head",
        "trailers",
        "ended",
        "error",
        "_waiter",
        "early_acked",
    )

    def __init__(self, proto: "H2ClientProtocol", stream_id: int, max_message_length: int) -> None:
        self.proto = proto
        self.stream_id = stream_id
        self.writer = StreamWriter(proto, stream_id)
        self.decoder = MessageDecoder(max_message_length)
        self.head: ResponseHead | None = None
        self.trailers: TrailersInfo | None = None
        self.ended = False
        self.error: GRPCError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.early_acked = 0  # bytes of the incomplete message acknowledged by _unstall

    # -- fed by the connection -------------------------------------------------

    def on_headers(self, headers: list[tuple[bytes, bytes]], end_stream: bool) -> None:
        head = parse_response_headers(headers, end_stream)
        self.head = head
        if head.trailers is not None:
            self.trailers = head.trailers
        self._wake()

    def on_trailers(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.trailers = parse_trailers(headers)
        self._wake()

    def on_data(self, data: bytes, flow_controlled_length: int) -> None:
        head = self.head
        if head is not None and head.trailers is not None:
            # Not a gRPC response (a proxy's HTTP error page, a wrong
            # content-type): its status is final and its body is no gRPC
            # framing; decoding it turned e.g. nginx's 413 page into
            # INTERNAL "invalid compressed flag".
            self.proto.ack(self.stream_id, flow_controlled_length)
            return
        padding = flow_controlled_length - len(data)
        if padding:
            self.proto.ack(self.stream_id, padding)
        self.decoder.feed(data)
        self._wake()

    def on_end(self) -> None:
        self.ended = True
        if self.trailers is None and self.error is None:
            if self.head is None:
                self.fail(GRPCError(Status.INTERNAL, "stream ended without response headers"))
            else:
                self.fail(GRPCError(Status.INTERNAL, "stream ended without trailers"))
        self._wake()

    def on_reset(self, code: int) -> None:
        if self.trailers is not None and code == h2.errors.ErrorCodes.NO_ERROR:
            # The server finished the call before reading all of our request.
            self.writer.fail()
            self._wake()
            return
        status = status_for_reset(code)
        self.fail(GRPCError(status, f"stream reset by the server with error code {code}"))

    def fail(self, error: GRPCError) -> None:
        if self.error is None and self.trailers is None:
            self.error = error
        self.ended = True
        self.writer.fail()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        waiter = self._waiter = self.proto.loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    # -- pulled by the caller -----------------------------------------------------

    async def wait_head(self) -> ResponseHead:
        while self.head is None:
            if self.error is not None:
                raise self.error
            await self._wait()
        return self.head

    async def read_message(self) -> tuple[bool, bytes | memoryview] | None:
        """The next message, or None when the response ended (trailers received)."""
        while True:
            if self.error is not None:
                raise self.error
            try:
                item = self.decoder.next_message()
            except FramingError as exc:
                status = Status.RESOURCE_EXHAUSTED if isinstance(exc, MessageTooLarge) else Status.INTERNAL
                self.proto.reset_stream(self.stream_id, h2.errors.ErrorCodes.CANCEL)
                error = GRPCError(status, str(exc))
                self.fail(error)
                raise error from None
            if item is not None:
                self.proto.ack(self.stream_id, len(item[1]) + HEADER_SIZE - self.early_acked)
                self.early_acked = 0
                return item
            if self.trailers is not None:
                if not self.decoder.at_boundary:
                    raise GRPCError(Status.INTERNAL, "response ended inside a message")
                return None
            self._unstall()
            await self._wait()

    def _unstall(self) -> None:
        """Acknowledge the received part of a message that could not complete otherwise.

        Credit goes back when the caller takes a whole message, so a slow
        reader holds at most one window; a message larger than the window
        would never complete. When the caller waits for a message whose rest
        exceeds what the server may still send, what arrived is acknowledged.
        """
        missing = self.decoder.missing
        if not missing:
            return
        try:
            window = self.proto.conn.remote_flow_control_window(self.stream_id)
        except h2.exceptions.H2Error:
            return
        if missing <= window:
            return
        unacked = self.unacked
        if unacked > 0:
            self.early_acked += unacked
            self.proto.ack(self.stream_id, unacked)

    @property
    def unacked(self) -> int:
        """Received bytes not yet given back to flow control."""
        decoder = self.decoder
        return decoder.buffered + (HEADER_SIZE if decoder.missing is not None else 0) - self.early_acked

    async def wait_trailers(self) -> TrailersInfo:
        while self.trailers is None:
            if self.error is not None:
                raise self.error
            await self._wait()
        return self.trailers

    def cancel(self) -> None:
        if not self.ended:
            self.proto.reset_stream(self.stream_id, h2.errors.ErrorCodes.CANCEL)
        self.fail(GRPCError(Status.CANCELLED, "call cancelled"))


class H2ClientProtocol(H2Protocol):
    def __init__(
        self, loop: asyncio.AbstractEventLoop, config: Configuration, on_lost: Callable[["H2ClientProtocol"], None] | None = None
    ) -> None:
        super().__init__(loop)
        self.config = config
        self.conn = _H2Connection(config=_H2_CONFIG)
        self.conn.encoder = CachingEncoder()  # a method's request headers repeat
        self.streams: dict[int, H2ClientStream] = {}
        self.peer: Peer | None = None
        self.usable = True
        self._on_lost = on_lost
        self._slot_waiters: list[asyncio.Future[None]] = []
        self.closed: asyncio.Future[None] = loop.create_future()
        self.lifecycle = ClientLifecycle(self, config)
        self._dispatch: dict[type, Callable[[Any], None]] = {
            h2.events.ResponseReceived: self._on_response,
            h2.events.TrailersReceived: self._on_trailers,
            h2.events.DataReceived: self._on_data,
            h2.events.StreamEnded: self._on_stream_ended,
            h2.events.StreamReset: self._on_stream_reset,
            h2.events.WindowUpdated: self._on_window,
            h2.events.RemoteSettingsChanged: self._on_settings,
            h2.events.ConnectionTerminated: self._on_goaway,
            h2.events.PingAckReceived: self._on_ping_ack,
        }

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's transports implement the
        # asyncio.Transport interface without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        self.peer = Peer(transport.get_extra_info("peername"), ssl_object=transport.get_extra_info("ssl_object"))
        cfg = self.config
        self.conn.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: cfg.http2_stream_window_size,
                h2.settings.SettingCodes.MAX_FRAME_SIZE: cfg.http2_max_frame_size,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: cfg.http2_max_header_list_size,
            },
        )
        self.conn.initiate_connection()
        extra = cfg.http2_connection_window_size - 65535
        if extra > 0:
            self.conn.increment_flow_control_window(extra)
        self.lifecycle.start()
        self.flush()

    def data_received(self, data: bytes) -> None:
        self.lifecycle.received()
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            log.warning("HTTP/2 protocol error from server: %s", exc)
            try:
                self.conn.close_connection(error_code=h2.errors.ErrorCodes.PROTOCOL_ERROR)
            except h2.exceptions.H2Error:
                pass
            self.flush()
            if self.transport is not None:
                self.transport.close()
            return
        dispatch = self._dispatch
        for event in events:
            handler = dispatch.get(type(event))
            if handler is not None:
                handler(event)
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        self.transport = None
        self.cancel_flush()
        self.lifecycle.stop()
        error = GRPCError(Status.UNAVAILABLE, f"connection lost{': ' + str(exc) if exc else ''}")
        for stream in list(self.streams.values()):
            stream.fail(error)
        self.streams.clear()
        self._wake_slots()
        if not self.closed.done():
            self.closed.set_result(None)
        if self._on_lost is not None:
            self._on_lost(self)

    # -- streams -------------------------------------------------------------------

    def has_free_slot(self) -> bool:
        """True when :meth:`open_stream` would not wait for the server's MAX_CONCURRENT_STREAMS."""
        conn = self.conn
        limit = conn.remote_settings.max_concurrent_streams
        # h2's count walks every stream it tracks; it cannot exceed their number.
        return len(conn.streams) < limit or conn.open_outbound_streams < limit

    async def open_stream(self, headers: list[tuple[bytes, bytes]], max_message_length: int) -> H2ClientStream:
        conn = self.conn
        while not self.has_free_slot():
            if not self.usable:
                break
            slot = self.loop.create_future()
            self._slot_waiters.append(slot)
            await slot
        if not self.usable or self.transport is None:
            raise GRPCError(Status.UNAVAILABLE, "connection is closed")
        stream_id = conn.get_next_available_stream_id()
        stream = H2ClientStream(self, stream_id, max_message_length)
        conn.send_headers(stream_id, headers)
        self.streams[stream_id] = stream
        self.schedule_flush()
        return stream

    def release(self, stream: H2ClientStream) -> None:
        if self.streams.pop(stream.stream_id, None) is not None:
            self.forget(stream.writer)
            self._wake_slots()
            if not self.streams:
                self.lifecycle.calls_ended()
            if not stream.ended:
                self.reset_stream(stream.stream_id, h2.errors.ErrorCodes.CANCEL)
            # Stream credit for data the caller never read (the connection's
            # credit went back on arrival, see H2Protocol.received).
            unacked = stream.unacked
            if unacked > 0:
                stream.early_acked += unacked
                self.ack(stream.stream_id, unacked)

    def _wake_slots(self) -> None:
        if self._slot_waiters:
            waiters, self._slot_waiters = self._slot_waiters, []
            for slot in waiters:
                if not slot.done():
                    slot.set_result(None)

    # -- events ---------------------------------------------------------------------

    def _on_response(self, event: h2.events.ResponseReceived) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.on_headers(event.headers, event.stream_ended is not None)

    def _on_trailers(self, event: h2.events.TrailersReceived) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.on_trailers(event.headers)

    def _on_data(self, event: h2.events.DataReceived) -> None:
        self.received(event.flow_controlled_length)
        stream = self.streams.get(event.stream_id)
        if stream is None:
            return
        stream.on_data(event.data, event.flow_controlled_length)

    def _on_stream_ended(self, event: h2.events.StreamEnded) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.on_end()
            self._wake_slots()

    def _on_stream_reset(self, event: h2.events.StreamReset) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.on_reset(event.error_code)
            self._wake_slots()

    def _on_window(self, event: Any) -> None:
        self.pump()

    def _on_settings(self, event: Any) -> None:
        self.pump()
        self._wake_slots()

    def _on_goaway(self, event: h2.events.ConnectionTerminated) -> None:
        # New calls go to a new connection; calls above last_stream_id were
        # never processed and are safe to retry, so they fail UNAVAILABLE.
        self.usable = False
        last = event.last_stream_id if event.last_stream_id is not None else 0
        for sid, stream in list(self.streams.items()):
            if sid > last:
                stream.fail(GRPCError(Status.UNAVAILABLE, "the server is going away (GOAWAY); the call was not processed"))
        self._wake_slots()
        if event.error_code not in (h2.errors.ErrorCodes.NO_ERROR, None):
            log.warning("server sent GOAWAY with error %s", event.error_code)
        if not self.streams and self.transport is not None:
            self.transport.close()

    def _on_ping_ack(self, event: h2.events.PingAckReceived) -> None:
        self.lifecycle.ping_acked(bytes(event.ping_data or b""))

    def abort(self, reason: str) -> None:
        """The peer is unreachable (keepalive): fail every call UNAVAILABLE now and drop the socket."""
        self.usable = False
        error = GRPCError(Status.UNAVAILABLE, reason)
        for stream in list(self.streams.values()):
            stream.fail(error)
        transport = self.transport
        if transport is not None:
            transport.abort()

    def close(self) -> None:
        self.usable = False
        if self.transport is not None:
            try:
                self.conn.close_connection()
            except h2.exceptions.H2Error:
                pass
            self.flush()
            transport = self.transport
            if transport is not None:
                transport.close()
                if transport.get_extra_info("ssl_object") is not None:
                    # GOAWAY and our close_notify are written; do not wait for the
                    # server's close_notify. grpcio never sends one, and asyncio would
                    # hold the socket (and Channel.__aexit__) for ssl_shutdown_timeout (30 s).
                    transport.abort()
