"""The bundled HTTP/2 server: one ``asyncio.Protocol`` per connection over ``h2``.

Design points (see ``docs/architecture.md``):

* One task per call, none per message. Incoming DATA is fed into the call's
  :class:`~grpcasgi.protocol.framing.MessageDecoder` from ``data_received``;
  the call's task decodes messages when it asks for them.
* Stream flow control follows consumption: a stream's received bytes are
  acknowledged only when the application takes the message, so a slow
  handler slows its client instead of growing our buffers. The connection
  window is credited on arrival (``H2Protocol.received``), so that handler
  does not stall the other calls of the connection.
* Writes are coalesced: frames produced while handling a batch of received
  data, or by call tasks during one event-loop turn, leave in a single
  ``transport.write``. Consecutive small messages of a stream are packed into
  one DATA frame.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Callable, cast

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hyperframe.frame

from ..call import CancelReason, make_scope
from ..codec import CodecBase, StatusDetailsCodecBase
from ..config import Configuration
from ..exceptions import ProtocolError, StreamTerminatedError
from ..peer import Peer
from ..protocol.compression import SUPPORTED_ENCODINGS, accept_encoding_header
from ..protocol.content_type import content_type_for
from ..protocol.framing import HEADER_SIZE, MessageDecoder
from ..protocol.headers import RequestRejected, parse_request, response_headers, trailers, trailers_only
from ..protocol.metadata import encode_metadata
from ..protocol.status import Status
from ..routing import Router
from ..types import App, SendEvent
from .base import HIGH_WATER, H2Protocol, StreamWriter
from .guard import ServerH2Connection
from .hpack_cache import CachingEncoder
from .lifecycle import CLOSE_LINGER, ServerLifecycle, goaway_frame
from .messages import DecodingServerCall, encode_reply_message, end_of_call, response_encoding

if TYPE_CHECKING:
    pass

log = logging.getLogger("grpcasgi.server")

__all__ = ["ServerState", "H2ServerProtocol", "H2ServerCall"]

_H2_CONFIG = h2.config.H2Configuration(
    client_side=False,
    header_encoding=None,
    # We build every outbound header list ourselves from validated parts.
    validate_outbound_headers=False,
    normalize_outbound_headers=False,
    # Inbound validation stays on: it is the first line against hostile peers.
    validate_inbound_headers=True,
)

_ACCEPT_ENCODING_HEADER = (b"grpc-accept-encoding", accept_encoding_header())


def _opened_after(conn: h2.connection.H2Connection, sid: int) -> int:
    """Open client streams newer than ``sid``: opened later in the same read.

    h2 creates every stream of a received chunk before its events are
    dispatched, so its open count already includes them when ``sid``'s
    request is handled; without this a burst above the limit refused its
    first streams and served the later ones (Python 3.12's scheduling
    delivered the test's three requests in one read).
    """
    count = 0
    for other in reversed(conn.streams):  # creation order: ascending ids
        if other <= sid:
            break
        if other % 2 and conn.streams[other].open:
            count += 1
    return count


class ServerState:
    """What every connection of one server shares."""

    __slots__ = ("app", "router", "config", "codecs", "status_details_codec", "connections", "closing")

    def __init__(
        self,
        app: App,
        router: Router,
        config: Configuration,
        codecs: dict[str, CodecBase],
        status_details_codec: StatusDetailsCodecBase | None,
    ) -> None:
        self.app = app
        self.router = router
        self.config = config
        self.codecs = codecs
        self.status_details_codec = status_details_codec
        self.connections: set[H2ServerProtocol] = set()
        self.closing = False


class H2ServerCall(DecodingServerCall):
    __slots__ = ("_proto", "stream_id", "writer", "_response_encoding", "_early_acked")

    _log = log

    def __init__(self, proto: "H2ServerProtocol", stream_id: int, scope: Any, codec: CodecBase) -> None:
        super().__init__(scope, codec, proto.state.config.max_receive_message_length)
        self._proto = proto
        self.stream_id = stream_id
        self._early_acked = 0  # bytes of the incomplete message acknowledged by _before_wait
        self.writer = StreamWriter(proto, stream_id)
        self.writer.on_end = self._after_trailers
        # Answer in the client's encoding when it sent one (and accepts it);
        # the app may choose another in grpc.response.start.
        self._response_encoding: str | None = response_encoding(scope)

    # -- input (called by the protocol) -----------------------------------

    def feed_data(self, data: bytes, flow_controlled_length: int) -> None:
        if self._discard:
            self._proto.ack(self.stream_id, flow_controlled_length)
            return
        padding = flow_controlled_length - len(data)
        if padding:
            self._proto.ack(self.stream_id, padding)
        self._decoder.feed(data)
        self._wake()

    def feed_end(self) -> None:
        self._request_ended = True
        self._wake()

    def on_reset(self, reason: CancelReason = CancelReason.RESET) -> None:
        self._disconnected = True
        self._wake()
        self.writer.fail()
        self.cancel(reason)

    def _discard_input(self) -> None:
        """Stop buffering this request: acknowledge what is held and all that follows."""
        self._discard = True
        decoder = self._decoder
        held = decoder.buffered + (HEADER_SIZE if decoder.missing is not None else 0) - self._early_acked
        self._early_acked = 0
        if held > 0:
            self._proto.ack(self.stream_id, held)
        self._decoder = MessageDecoder(0)

    # -- receive (DecodingServerCall's hooks) ----------------------------------

    def _message_taken(self, size: int) -> None:
        """Return the message's flow-control credit: the stream's window follows consumption."""
        self._proto.ack(self.stream_id, size + HEADER_SIZE - self._early_acked)
        self._early_acked = 0

    def _before_wait(self) -> None:
        """Acknowledge the received part of a message that could not complete otherwise.

        Credit normally goes back only when the application takes a whole
        message, so a slow reader holds at most one window. A message larger
        than the window (allowed: the limit is ``max_receive_message_length``,
        checked at its prefix) would then never complete. So when the
        application waits for a message whose rest exceeds what the peer may
        still send, what arrived of it is acknowledged now.
        """
        missing = self._decoder.missing
        if not missing:
            return
        try:
            window = self._proto.conn.remote_flow_control_window(self.stream_id)
        except h2.exceptions.H2Error:
            return
        if missing <= window:
            return
        unacked = HEADER_SIZE + self._decoder.buffered - self._early_acked
        if unacked > 0:
            self._early_acked += unacked
            self._proto.ack(self.stream_id, unacked)

    # -- send ---------------------------------------------------------------

    async def send(self, event: SendEvent) -> None:
        kind = event["type"]
        if self._disconnected:
            raise StreamTerminatedError("the stream was reset by the client")
        if kind == "grpc.response.message":
            if self.response_ended:
                raise ProtocolError("cannot send a message: the call has ended")
            if not self.response_started:
                self._send_headers(None)
            prefix, data = encode_reply_message(
                self._codec,
                event["message"],  # type: ignore[typeddict-item]
                self.scope["reply_type"],
                self._proto.state.config.max_send_message_length,
                self._response_encoding if event.get("compress", True) else None,
            )
            writer = self.writer
            writer.write(prefix, data)
            if writer.size > HIGH_WATER:
                await writer.drain()
        elif kind == "grpc.response.start":
            if self.response_started:
                raise ProtocolError("initial metadata was already sent")
            if self.response_ended:
                raise ProtocolError("the call has ended")
            if "compression" in event:
                self._response_encoding = response_encoding(self.scope, event["compression"])  # type: ignore[typeddict-item]
            self._send_headers(event.get("metadata"))
        elif kind == "grpc.response.end":
            if self.response_ended:
                raise ProtocolError("the call has already ended")
            await self._send_end(event)  # type: ignore[arg-type]
        else:
            raise ProtocolError(f"unknown event type {kind!r}")

    def _send_headers(self, metadata: Any) -> None:
        encoded = encode_metadata(metadata) if metadata else None
        self.response_started = True
        headers = response_headers(
            content_type_for(self._codec.__content_subtype__), encoded, self._response_encoding
        )
        self._proto.conn.send_headers(self.stream_id, headers)
        self._proto.schedule_flush()

    async def _send_end(self, event: dict[str, Any]) -> None:
        if event.get("reset"):
            self.response_ended = True
            self._proto.reset_stream(self.stream_id, h2.errors.ErrorCodes.CANCEL)
            return
        status, message, details_bin, encoded = end_of_call(event, self._proto.state.status_details_codec)
        self.response_ended = True
        if not self.response_started:
            self.response_started = True
            headers = trailers_only(
                status, message, details_bin, encoded, content_type_for(self._codec.__content_subtype__)
            )
            if status is Status.UNIMPLEMENTED:
                headers.append(_ACCEPT_ENCODING_HEADER)
            self._proto.conn.send_headers(self.stream_id, headers, end_stream=True)
            self._after_trailers()
            self._proto.schedule_flush()
            return
        self.writer.end(trailers(status, message, details_bin, encoded))
        await self.writer.drain(until_empty=True)

    def _after_trailers(self) -> None:
        if not self._request_ended:
            # The response is complete; tell the client to stop sending
            # (PROTOCOL-HTTP2.md allows RST_STREAM NO_ERROR after trailers).
            self._discard_input()
            self._proto.reset_stream(self.stream_id, h2.errors.ErrorCodes.NO_ERROR)

    def closed(self) -> None:
        if not self._discard:
            # Request data the handler never read: drop the buffer and
            # discard what still arrives (connection credit went back on
            # arrival, see H2Protocol.received).
            self._discard_input()
        self._proto.call_done(self)
        # Break the call <-> writer cycle so the call's objects are freed by
        # reference counting, not left for the cyclic garbage collector.
        self.writer.on_end = None


_RequestReceived = h2.events.RequestReceived
_DataReceived = h2.events.DataReceived
_StreamEnded = h2.events.StreamEnded
_StreamReset = h2.events.StreamReset
_WindowUpdated = h2.events.WindowUpdated
_RemoteSettingsChanged = h2.events.RemoteSettingsChanged
_ConnectionTerminated = h2.events.ConnectionTerminated

#: Unsent output above which a connection stops reading until the peer reads:
#: a peer that sends PINGs, SETTINGS or requests but never reads could
#: otherwise grow the replies queued for it without bound.
_READ_PAUSE_UNSENT = 1024 * 1024


class H2ServerProtocol(H2Protocol):
    """One HTTP/2 connection of the bundled server."""

    conn: ServerH2Connection

    def __init__(self, state: ServerState, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.state = state
        self.conn = ServerH2Connection(_H2_CONFIG, max_header_list_size=state.config.http2_max_header_list_size)
        self.conn.encoder = CachingEncoder()  # response headers and trailers repeat
        self.calls: dict[int, H2ServerCall] = {}
        self._peer: Peer | None = None
        self._closing = False
        #: New streams get RST_STREAM REFUSED_STREAM (after the final GOAWAY).
        self.refusing = False
        self._turned_away = False  # ended (GOAWAY sent, see _linger_close): input is discarded
        self._reading_paused = False
        self.lifecycle = ServerLifecycle(self, state.config)
        self.closed: asyncio.Future[None] = loop.create_future()
        self._dispatch: dict[type, Callable[[Any], None]] = {
            _RequestReceived: self._on_request,
            _DataReceived: self._on_data,
            _StreamEnded: self._on_stream_ended,
            _StreamReset: self._on_stream_reset,
            _WindowUpdated: self._on_window,
            _RemoteSettingsChanged: self._on_settings,
            _ConnectionTerminated: self._on_goaway,
            h2.events.PingReceived: self._on_ping,
            h2.events.PingAckReceived: self._on_ping_ack,
        }

    @property
    def peer(self) -> Peer | None:
        return self._peer

    # -- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's transports implement the
        # asyncio.Transport interface without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        ssl_object = transport.get_extra_info("ssl_object")
        addr = transport.get_extra_info("peername")
        self._peer = Peer(addr, ssl_object=ssl_object)
        if ssl_object is not None and ssl_object.selected_alpn_protocol() not in ("h2", None):
            log.warning("%r negotiated ALPN %r, not h2; closing", self._peer, ssl_object.selected_alpn_protocol())
            self.transport = None
            transport.close()
            return
        cfg = self.state.config
        conn = self.conn
        conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: cfg.http2_max_concurrent_streams,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: cfg.http2_stream_window_size,
                h2.settings.SettingCodes.MAX_FRAME_SIZE: cfg.http2_max_frame_size,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: cfg.http2_max_header_list_size,
            },
        )
        conn.initiate_connection()
        extra = cfg.http2_connection_window_size - 65535
        if extra > 0:
            conn.increment_flow_control_window(extra)
        limit = cfg.max_connections
        if limit is not None and len(self.state.connections) >= limit:
            self._turn_away(limit)
            return
        self.state.connections.add(self)
        self.lifecycle.start()
        if self.state.closing:  # accepted just before the listener closed
            self.goaway(refuse_now=True)
        self.flush()

    def _turn_away(self, limit: int) -> None:
        """Over ``max_connections``: SETTINGS and GOAWAY (no stream processed), then close.

        The connection lingers a moment, discarding input, so the client can
        read the GOAWAY (closing with unread input makes the kernel send a
        reset that may destroy it) and retry elsewhere or later.
        """
        log.warning("%r: refused, %d connections open (max_connections)", self._peer, limit)
        self.write_raw(goaway_frame(0, 0, b"max_connections"))
        self._linger_close()

    def _linger_close(self) -> None:
        """Send what is queued, half-close, and discard input for a moment before closing.

        Closing a socket with unread input makes the kernel send a reset,
        which can destroy the GOAWAY before the peer reads it (a flooding
        peer always has unread input); so the write side closes first (FIN
        after the GOAWAY), input is read and dropped until the peer closes,
        and the socket is aborted after :data:`CLOSE_LINGER` at the latest.
        """
        self.flush()
        transport = self.transport
        if transport is None:
            return
        self._turned_away = True
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()
        if transport.can_write_eof():
            transport.write_eof()
        else:
            transport.close()
        # Nothing more is written (asyncio refuses writes after write_eof);
        # the protocol behaves as if the connection were gone already.
        self.transport = None
        self.cancel_flush()
        self.loop.call_later(CLOSE_LINGER, transport.abort)

    def data_received(self, data: bytes) -> None:
        if self._turned_away:
            return
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._protocol_error(exc)
            return
        dispatch = self._dispatch
        for event in events:
            handler = dispatch.get(type(event))
            if handler is not None:
                handler(event)
                if self._turned_away:  # the handler ended the connection
                    return
        if self.conn.malformed:
            for sid, reason in self.conn.malformed:
                log.warning("%r: malformed request headers on stream %d, stream reset: %s", self._peer, sid, reason)
            self.conn.malformed.clear()
        self.lifecycle.received(bool(events))
        self.flush()
        transport = self.transport
        if self._paused and transport is not None and transport.get_write_buffer_size() > _READ_PAUSE_UNSENT:
            self._reading_paused = True
            transport.pause_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        self.lifecycle.stop()
        self.transport = None
        self.cancel_flush()
        for call in list(self.calls.values()):
            call.on_reset(CancelReason.DISCONNECT)
        if not self.closed.done() and not self.calls:
            self.closed.set_result(None)

    # -- events ---------------------------------------------------------------

    def _on_request(self, event: h2.events.RequestReceived) -> None:
        sid = event.stream_id
        method = b""
        path = b""
        for name, value in event.headers:  # pseudo-headers come first
            if name[0] != 58:
                break
            if name == b":method":
                method = value
            elif name == b":path":
                path = value
        state = self.state
        limit = state.config.http2_max_concurrent_streams
        conn = self.conn
        tracked = len(conn.streams)
        too_many = False
        if tracked > limit or tracked > 2 * len(self.calls) + 64:
            # h2's count walks every stream it tracks and forgets the closed
            # ones: done only when the limit could be exceeded or closed
            # streams piled up, so it costs O(1) per request amortised.
            too_many = conn.open_inbound_streams - _opened_after(conn, sid) > limit
        if self.refusing or len(self.calls) >= 2 * limit or too_many:
            # REFUSED_STREAM: the request was not processed, clients retry it
            # (on another connection). Above the advertised stream limit (h2
            # no longer checks it, see ServerH2Connection), or with as many
            # calls again still winding down after resets: resets cannot
            # pile up handler tasks.
            self.reset_stream(sid, h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        try:
            head = parse_request(method, path.decode("ascii", "replace"), event.headers)
        except RequestRejected as exc:
            log.info("rejected request on stream %d from %r: %s", sid, self._peer, exc.message)
            self._reject(sid, exc.http_status, exc.status, exc.message)
            return
        codec = state.codecs.get(head.codec)
        if codec is None:
            log.info("rejected request for %s: unsupported content-type %r", head.path, head.content_type)
            self._reject(sid, 415, Status.UNKNOWN, f"unsupported content-type {head.content_type!r}")
            return
        if head.encoding is not None and head.encoding not in SUPPORTED_ENCODINGS:
            log.info("rejected request for %s: unsupported grpc-encoding %r", head.path, head.encoding)
            self._reject(
                sid,
                200,
                Status.UNIMPLEMENTED,
                f"grpc-encoding {head.encoding!r} is not supported",
                extra=[_ACCEPT_ENCODING_HEADER],
            )
            return
        assert self._peer is not None
        scope = make_scope(head, state.router, self._peer, "bundled")
        call = H2ServerCall(self, sid, scope, codec)
        self.calls[sid] = call
        call.start(state.app, self.loop)

    def _reject(
        self,
        sid: int,
        http_status: int,
        status: Status,
        message: str,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        if http_status == 200:
            headers = trailers_only(status, message, None, extra)
        else:
            headers = [
                (b":status", str(http_status).encode("ascii")),
                (b"content-type", b"text/plain; charset=utf-8"),
                *trailers(status, message),
            ]
        try:
            self.conn.send_headers(sid, headers, end_stream=True)
        except h2.exceptions.H2Error:
            return
        stream = self.conn.streams.get(sid)
        if stream is not None and not stream.closed:
            # The request body is not wanted.
            self.reset_stream(sid, h2.errors.ErrorCodes.NO_ERROR)

    def _on_data(self, event: h2.events.DataReceived) -> None:
        self.received(event.flow_controlled_length)
        call = self.calls.get(event.stream_id)
        if call is None:
            return
        call.feed_data(event.data, event.flow_controlled_length)

    def _on_stream_ended(self, event: h2.events.StreamEnded) -> None:
        call = self.calls.get(event.stream_id)
        if call is not None:
            call.feed_end()

    def _on_stream_reset(self, event: h2.events.StreamReset) -> None:
        call = self.calls.get(event.stream_id)
        if call is not None:
            running = not call.response_ended
            self.forget(call.writer)
            call.on_reset()
            if running and not self.lifecycle.call_reset():
                self.calm_down("too many streams reset while running (rapid reset)")

    def _on_window(self, event: Any) -> None:
        self.pump()

    def _on_settings(self, event: Any) -> None:
        self.pump()
        if not self.lifecycle.settings_received():
            self.calm_down("too many SETTINGS frames")

    def _on_ping(self, event: h2.events.PingReceived) -> None:
        if not self.lifecycle.ping_received():
            self.calm_down("too_many_pings")

    def _on_ping_ack(self, event: h2.events.PingAckReceived) -> None:
        self.lifecycle.ping_acked(bytes(event.ping_data or b""))

    def _on_goaway(self, event: h2.events.ConnectionTerminated) -> None:
        # The client opens no more streams. h2 closes its state machine on a
        # received GOAWAY and sends nothing after it, so running calls can no
        # longer answer: cancel them as for a lost connection (instead of
        # letting each fail in send with h2's ProtocolError), then close.
        self._closing = True
        for call in list(self.calls.values()):
            self.forget(call.writer)
            call.on_reset(CancelReason.DISCONNECT)
        if not self.calls and self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _protocol_error(self, exc: h2.exceptions.ProtocolError) -> None:
        log.warning("HTTP/2 protocol error from %r: %s: %s", self._peer, type(exc).__name__, exc)
        code = getattr(exc, "error_code", None) or h2.errors.ErrorCodes.PROTOCOL_ERROR
        try:
            self.conn.close_connection(error_code=code)
        except h2.exceptions.H2Error:
            pass
        for call in list(self.calls.values()):
            self.forget(call.writer)
            call.on_reset(CancelReason.DISCONNECT)
        self._linger_close()

    def calm_down(self, reason: str) -> None:
        """GOAWAY ENHANCE_YOUR_CALM: the peer abuses the connection; its calls end."""
        if self.transport is None:
            return
        log.warning("%r: %s; GOAWAY ENHANCE_YOUR_CALM", self._peer, reason)
        self._end_connection(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, reason)

    def give_up(self, reason: str) -> None:
        """A timeout (handshake, stalled frame, keepalive): GOAWAY and close."""
        if self.transport is None:
            return
        log.warning("%r: %s; closing the connection", self._peer, reason)
        self._end_connection(h2.errors.ErrorCodes.NO_ERROR, reason)

    def _end_connection(self, code: h2.errors.ErrorCodes, reason: str) -> None:
        try:
            self.conn.close_connection(error_code=code, additional_data=reason.encode("ascii", "replace"))
        except h2.exceptions.H2Error:
            pass
        for call in list(self.calls.values()):
            self.forget(call.writer)
            call.on_reset(CancelReason.DISCONNECT)
        self._linger_close()

    def write_raw(self, data: bytes) -> None:
        """Write a frame built outside h2, after everything h2 has queued."""
        self.flush()
        if self.transport is not None:
            self.transport.write(data)

    def close_when_done(self) -> None:
        """Close the connection as soon as no call is left."""
        self._closing = True
        self.schedule_flush()

    def flush(self) -> None:
        if self._pump_set:
            # Sending data resets the ping strikes (grpc core does the same).
            self.lifecycle.pings.reset()
        super().flush()
        if self._closing and not self.calls and not self._pump_set and self.transport is not None:
            # Once only: asyncio's SSL transport drops its protocol on a second
            # close(), and any later write (a shutdown's GOAWAY) then raises
            # AttributeError (seen on 3.12, where connection_lost comes later).
            if not self.transport.is_closing():
                self.transport.close()

    def call_done(self, call: H2ServerCall) -> None:
        self.calls.pop(call.stream_id, None)
        if not self.calls:
            self.lifecycle.calls_ended()
        self.forget(call.writer)
        if not call.response_ended and not call._disconnected:
            self.reset_stream(call.stream_id, h2.errors.ErrorCodes.CANCEL)
        self.schedule_flush()
        if not self.calls and self.transport is None and not self.closed.done():
            self.closed.set_result(None)

    # -- shutdown ---------------------------------------------------------------

    def goaway(self, *, refuse_now: bool = False) -> None:
        """Graceful shutdown of this connection: the two-step GOAWAY.

        Not conn.close_connection(): it moves h2's state machine to CLOSED,
        after which the running calls can send nothing (not even their
        trailers) and graceful shutdown turns into "connection lost". See
        :meth:`ServerLifecycle.drain` for the steps; the connection closes
        itself once the final GOAWAY is out and its calls have ended.
        """
        self.lifecycle.drain("shutdown", refuse_now=refuse_now)

    def cancel_calls(self, reason: CancelReason) -> None:
        for call in list(self.calls.values()):
            call.cancel(reason)

    def abort(self) -> None:
        if self.transport is not None:
            self.flush()
            if self.transport is not None:
                self.transport.close()

    def kill(self) -> None:
        """Drop the socket at once: the last resort of a shutdown (a peer that does not read)."""
        if self.transport is not None:
            self.transport.abort()
