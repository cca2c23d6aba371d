"""Defences of the server's HTTP/2 connection against hostile or broken peers.

``h2`` implements the protocol; these pieces bound what a peer can make the
server hold or do, where ``h2`` alone does not:

* :class:`GuardedFrameBuffer` checks a frame's declared length as soon as its
  9-byte header arrives (``h2`` waits for the whole frame first, so a peer
  announcing a 16 MiB frame and sending it slowly made it buffer all of it)
  and caps the bytes of a header block still waiting for END_HEADERS (``h2``
  only caps the *number* of CONTINUATION frames, at 64, i.e. up to
  64 x max frame size bytes).
* :class:`ServerH2Connection` turns two connection errors of ``h2`` into the
  stream errors RFC 9113 asks for: a stream beyond SETTINGS_MAX_CONCURRENT_STREAMS
  (``h2`` raises TooManyStreamsError, which took every call on the connection
  down; the server refuses it with RST_STREAM REFUSED_STREAM instead) and a
  malformed request header block (section 8.1.1: a stream error
  PROTOCOL_ERROR; ``h2`` failed the connection, so one client sending a
  header value with surrounding whitespace killed its other calls).
* :class:`RateBudget` and :class:`PingPolicy` count what a peer may send for
  free in bulk (SETTINGS, RST_STREAM of running calls, PING) so the
  connection can be ended with GOAWAY ENHANCE_YOUR_CALM.

No asyncio here: the protocol classes own the timing and the I/O.
"""

from __future__ import annotations

import logging
from typing import Any

import h2.config
import h2.connection
import hpack.exceptions
import h2.errors
import h2.exceptions
import h2.frame_buffer
from hyperframe.frame import ContinuationFrame, HeadersFrame, PushPromiseFrame

__all__ = ["GuardedFrameBuffer", "ServerH2Connection", "RateBudget", "PingPolicy", "header_block_limit"]

# hpack logs every header it encodes or decodes (names *and values*) at DEBUG
# on the "hpack" loggers, so an application switching the root logger to
# DEBUG would write bearer tokens and API keys to its logs. Unless the
# application configured those loggers itself, they stop at INFO.
_hpack_logger = logging.getLogger("hpack")
if _hpack_logger.level == logging.NOTSET:
    _hpack_logger.setLevel(logging.INFO)


def header_block_limit(max_header_list_size: int) -> int:
    """Largest encoded header block buffered before END_HEADERS.

    HPACK usually shrinks a header list, but Huffman coding of unusual bytes
    can expand it (codes up to 30 bits a byte), so the cap on the encoded
    block is four times the advertised list size, and never below 64 KiB.
    """
    return max(4 * max_header_list_size, 64 * 1024)


class GuardedFrameBuffer(h2.frame_buffer.FrameBuffer):
    """``h2``'s frame buffer with early frame-length checks and a header-block byte cap."""

    def __init__(self, *, server: bool, max_header_block: int) -> None:
        super().__init__(server=server)
        self.max_header_block = max_header_block
        self._block_bytes = 0

    def _buffer(self) -> Any:
        # h2 >= 4.2 keeps a bytearray in ``_data``, earlier versions bytes in ``data``.
        data = getattr(self, "_data", None)
        return data if data is not None else getattr(self, "data", b"")

    @property
    def pending(self) -> bool:
        """An incomplete frame or header block is buffered."""
        return bool(len(self._buffer()) or self._headers_buffer)

    @property
    def buffered(self) -> int:
        """Bytes held: the incomplete frame plus header-block fragments."""
        return len(self._buffer()) + self._block_bytes

    def __next__(self) -> Any:
        data = self._buffer()
        if len(data) >= 9:
            length = int.from_bytes(bytes(data[:3]), "big")
            if length > self.max_frame_size:
                raise h2.exceptions.FrameTooLargeError(
                    f"Received overlong frame: length {length}, max {self.max_frame_size}"
                )
        return super().__next__()

    def _update_header_buffer(self, f: Any) -> Any:
        if isinstance(f, (HeadersFrame, PushPromiseFrame, ContinuationFrame)):
            if self._headers_buffer or "END_HEADERS" not in f.flags:
                start = 0 if not self._headers_buffer else self._block_bytes
                self._block_bytes = start + len(f.data)
                if self._block_bytes > self.max_header_block:
                    raise h2.exceptions.DenialOfServiceError(
                        f"header block larger than {self.max_header_block} bytes"
                    )
        result = super()._update_header_buffer(f)
        if not self._headers_buffer:
            self._block_bytes = 0
        return result


class _CompressionError(h2.exceptions.ProtocolError):
    error_code = h2.errors.ErrorCodes.COMPRESSION_ERROR


class ServerH2Connection(h2.connection.H2Connection):
    """The server's ``h2`` connection: per-stream refusals instead of connection errors.

    The stream limit is not checked by ``h2`` any more; the server refuses a
    request above it itself (it also counts calls whose handler is still
    winding down after a reset, which ``h2`` cannot see). Header blocks
    ``h2`` rejects as malformed reset their stream with PROTOCOL_ERROR and are
    reported in :attr:`malformed` (stream id, reason) for the server to log.
    """

    incoming_buffer: GuardedFrameBuffer

    def __init__(self, config: h2.config.H2Configuration, *, max_header_list_size: int) -> None:
        super().__init__(config=config)
        self.incoming_buffer = GuardedFrameBuffer(
            server=True, max_header_block=header_block_limit(max_header_list_size)
        )
        # h2 applies our advertised limit only once the peer acknowledges our
        # SETTINGS; a peer that never does got h2's 64 KiB default.
        self.decoder.max_header_list_size = max_header_list_size
        self.malformed: list[tuple[int, str]] = []
        self._admit = False

    @property
    def open_inbound_streams(self) -> int:
        if self._admit:
            # Decided before counting: h2's count walks every stream of the
            # connection, once per request.
            return 0
        count: int = super().open_inbound_streams
        return count

    def _receive_headers_frame(self, frame: Any) -> Any:
        new = frame.stream_id not in self.streams
        self._admit = True
        try:
            return super()._receive_headers_frame(frame)
        except h2.exceptions.ProtocolError as exc:
            if isinstance(exc.__cause__, hpack.exceptions.HPACKError) and type(exc) is h2.exceptions.ProtocolError:
                # RFC 9113 4.3: a field block that cannot be decoded is a
                # COMPRESSION_ERROR (h2 reports PROTOCOL_ERROR).
                raise _CompressionError(str(exc)) from exc
            # HPACK is decoded before the stream is created, so a stream this
            # frame created means the block decoded and h2's header
            # validation refused it: a malformed request, a stream error.
            stream = self.streams.get(frame.stream_id) if new else None
            if stream is None or type(exc) is not h2.exceptions.ProtocolError:
                raise
            self.malformed.append((frame.stream_id, str(exc)))
            frames = stream.reset_stream(h2.errors.ErrorCodes.PROTOCOL_ERROR)
            return frames, []
        finally:
            self._admit = False


class RateBudget:
    """A leaky bucket: ``rate`` events a second sustained, ``burst`` at once.

    :meth:`spend` returns False once the peer is over budget.
    """

    __slots__ = ("rate", "burst", "level", "stamp")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.level = 0.0
        self.stamp: float | None = None

    def spend(self, now: float, cost: float = 1.0) -> bool:
        if self.stamp is not None:
            self.level = max(0.0, self.level - (now - self.stamp) * self.rate)
        self.stamp = now
        self.level += cost
        return self.level <= self.burst


class PingPolicy:
    """gRPC's ping policing (grpc core's ping abuse policy).

    A PING that arrives sooner than ``min_interval`` after the previous one
    is a strike unless the server sent headers or data in between
    (:meth:`reset`); more than ``max_strikes`` strikes and the peer is told
    to calm down.
    """

    __slots__ = ("min_interval", "max_strikes", "strikes", "last")

    def __init__(self, min_interval: float, max_strikes: int) -> None:
        self.min_interval = min_interval
        self.max_strikes = max_strikes
        self.strikes = 0
        self.last: float | None = None

    def received(self, now: float) -> bool:
        """Count a received PING; False when the peer pinged too often."""
        last, self.last = self.last, now
        if last is not None and now - last < self.min_interval:
            self.strikes += 1
            return self.strikes <= self.max_strikes
        return True

    def reset(self) -> None:
        self.strikes = 0
        self.last = None
