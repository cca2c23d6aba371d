"""What the server and client HTTP/2 connections share: coalesced writes and
per-stream output queues that respect flow control.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

import h2.connection
import h2.errors
import h2.exceptions

from ..exceptions import StreamTerminatedError

__all__ = ["H2Protocol", "StreamWriter", "HIGH_WATER"]

log = logging.getLogger("grpcasgi.transport")

#: Queued output of one stream above which the sender waits for the peer.
HIGH_WATER = 256 * 1024

#: Bytes of one stream moved into h2 per round of a flush; large output is
#: written in rounds of this size instead of building a buffer of a whole
#: large message (fresh multi-MiB buffers cost page faults, and h2's
#: outgoing buffer is copied whole by data_to_send).
WRITE_CHUNK = 64 * 1024


class StreamWriter:
    """Output queue of one HTTP/2 stream.

    Messages are queued as (prefix, payload) pieces and moved into ``h2`` by
    :meth:`pump` as far as the flow-control windows allow, several small
    messages per DATA frame. The stream's end (trailers, or END_STREAM on the
    last DATA frame) is queued behind the data, so order is always kept.
    """

    __slots__ = ("proto", "stream_id", "_out", "size", "_end", "_end_headers", "_drain", "broken", "on_end")

    def __init__(self, proto: "H2Protocol", stream_id: int) -> None:
        self.proto = proto
        self.stream_id = stream_id
        self._out: deque[bytes | memoryview] = deque()
        self.size = 0
        self._end = False  # an end is queued
        self._end_headers: list[tuple[bytes, bytes]] | None = None  # trailers, or None for END_STREAM
        self._drain: asyncio.Future[None] | None = None
        self.broken = False
        self.on_end: Any = None  # called after the end went out

    @property
    def pending(self) -> bool:
        return bool(self._out) or self._end

    def write(self, prefix: bytes, payload: bytes) -> None:
        self._out.append(prefix)
        self._out.append(payload)
        self.size += len(prefix) + len(payload)
        self.proto.want_pump(self)

    def end(self, trailers: list[tuple[bytes, bytes]] | None = None) -> None:
        """Queue the end of the stream: trailers, or an END_STREAM flag."""
        self._end = True
        self._end_headers = trailers
        self.proto.want_pump(self)

    async def drain(self, *, until_empty: bool = False) -> None:
        """Wait until the queue is below the high-water mark (or empty)."""
        while not self.broken and (self.pending if until_empty else self.size > HIGH_WATER):
            drain = self._drain = self.proto.loop.create_future()
            try:
                await drain
            finally:
                self._drain = None
        if self.broken:
            raise StreamTerminatedError("the stream was closed")

    def wake(self) -> None:
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    def fail(self) -> None:
        self.broken = True
        self._out.clear()
        self.size = 0
        self._end = False
        self.wake()

    def pump(self) -> bool:
        """Move queued output into h2; True when nothing is left to send."""
        conn = self.proto.conn
        sid = self.stream_id
        out = self._out
        try:
            if out:
                window = conn.local_flow_control_window(sid)
                max_frame = conn.max_outbound_frame_size
                budget = WRITE_CHUNK
                while out and window > 0 and budget > 0:
                    n = min(window, max_frame, self.size)
                    end = self._end and self._end_headers is None and n == self.size
                    conn.send_data(sid, self._take(n), end_stream=end)
                    window -= n
                    budget -= n
                    if end:
                        self._finish_end()
                        return True
                if out:
                    if self.size <= HIGH_WATER // 2:
                        self.wake()
                    return False
            if self._end:
                if self._end_headers is not None:
                    conn.send_headers(sid, self._end_headers, end_stream=True)
                else:
                    conn.end_stream(sid)
                self._finish_end()
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError) as exc:
            log.debug("stream %d closed while sending: %r", sid, exc)
            self.fail()
            return True
        self.wake()
        return True

    def _finish_end(self) -> None:
        self._end = False
        self._end_headers = None
        self.wake()
        if self.on_end is not None:
            self.on_end()

    def _take(self, n: int) -> bytes | memoryview:
        out = self._out
        self.size -= n
        first = out[0]
        size = len(first)
        if size == n:
            out.popleft()
            return first
        if size > n:
            view = memoryview(first)
            out[0] = view[n:]
            return view[:n]
        parts = []
        remaining = n
        while remaining:
            piece = out[0]
            size = len(piece)
            if size <= remaining:
                parts.append(out.popleft())
                remaining -= size
            else:
                view = memoryview(piece)
                parts.append(view[:remaining])
                out[0] = view[remaining:]
                remaining = 0
        return b"".join(parts)


class H2Protocol(asyncio.Protocol):
    """Base of both connection protocols: one ``transport.write`` per loop turn."""

    conn: h2.connection.H2Connection

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self._flush_handle: asyncio.Handle | None = None
        self._pump_set: dict[StreamWriter, None] = {}
        self._paused = False
        self._conn_credit = 0  # connection-level credit owed to the peer (see received)
        self._stream_credit: dict[int, int] = {}  # stream-level credit owed (see ack)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self.schedule_flush()

    def want_pump(self, writer: StreamWriter) -> None:
        self._pump_set[writer] = None
        self.schedule_flush()

    def forget(self, writer: StreamWriter) -> None:
        """The stream is finished: drop its pending output and credit bookkeeping."""
        self._pump_set.pop(writer, None)
        self._stream_credit.pop(writer.stream_id, None)

    def schedule_flush(self) -> None:
        if self._flush_handle is None and self.transport is not None:
            self._flush_handle = self.loop.call_soon(self.flush)

    def pump(self) -> None:
        if self._paused or not self._pump_set:
            return
        done = [writer for writer in self._pump_set if writer.pump()]
        for writer in done:
            self._pump_set.pop(writer, None)

    def flush(self) -> None:
        self._flush_handle = None
        while True:
            if self._pump_set:
                self.pump()
            transport = self.transport
            if transport is None:
                return
            data = self.conn.data_to_send()
            if not data:
                return
            transport.write(data)
            # Small output leaves in this one write; streams with more than
            # WRITE_CHUNK queued go on in further rounds while the
            # transport takes it.
            if self._paused or not self._pump_set:
                return

    def cancel_flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None

    def received(self, n: int) -> None:
        """Connection-level credit for ``n`` flow-controlled bytes that just arrived.

        Streams are flow-controlled by consumption (:meth:`ack`), so a reader
        that does not read stalls its own peer only. The connection window is
        given back on arrival instead: acknowledged on consumption, one
        stream's unread data held the window every stream shares, and all
        other calls on the connection starved behind it. (grpc-go and grpc
        core decouple the two windows the same way.) Buffering stays bounded
        by open streams x stream window.
        """
        if n <= 0 or self.transport is None:
            return
        credit = self._conn_credit + n
        # Batched: a WINDOW_UPDATE once half the window is owed.
        if credit < self.conn.inbound_flow_control_window:
            self._conn_credit = credit
            return
        self._conn_credit = 0
        try:
            self.conn.increment_flow_control_window(credit)
        except h2.exceptions.H2Error:
            return
        self.schedule_flush()

    def ack(self, stream_id: int, n: int) -> None:
        """Give back ``n`` bytes of stream-level credit for data consumed (or discarded).

        Batched like h2's own window manager: the update goes out once the
        owed credit reaches what is left of the stream's window, so a stream
        whose window is nearly used up is never left waiting.
        """
        if n <= 0 or self.transport is None:
            return
        owed = self._stream_credit.get(stream_id, 0) + n
        stream = self.conn.streams.get(stream_id)
        if stream is None or stream.closed:
            self._stream_credit.pop(stream_id, None)
            return
        if owed < stream.inbound_flow_control_window:
            self._stream_credit[stream_id] = owed
            return
        self._stream_credit.pop(stream_id, None)
        try:
            self.conn.increment_flow_control_window(owed, stream_id=stream_id)
        except h2.exceptions.H2Error:
            return  # closed meanwhile: no credit is due
        self.schedule_flush()

    def reset_stream(self, stream_id: int, code: h2.errors.ErrorCodes) -> None:
        try:
            self.conn.reset_stream(stream_id, code)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            pass
        self.schedule_flush()
