"""Length-prefixed message framing (``PROTOCOL-HTTP2.md``, "Length-Prefixed-Message").

Each message is a 1-byte compressed flag, a 4-byte big-endian length and the
payload. HTTP/2 DATA frames do not respect message boundaries: one frame may
carry many messages or a fraction of one, so :class:`MessageDecoder` is fed
raw chunks and hands out whole messages.
"""

from __future__ import annotations

import struct
from collections import deque

__all__ = ["encode_message", "frame_header", "MessageDecoder", "FramingError", "MessageTooLarge"]

HEADER_SIZE = 5
_HEADER = struct.Struct(">?I")
_pack_header = _HEADER.pack
# Unpacked as an integer flag: "?" would read any non-zero byte as True, but
# only 0 and 1 are defined and other values are a protocol error.
_unpack_header = struct.Struct(">BI").unpack_from


class FramingError(Exception):
    """The byte stream does not hold a well-formed sequence of messages."""


class MessageTooLarge(FramingError):
    """A length prefix announces a message over the receiver's limit.

    Raised as soon as the 5-byte prefix is seen, before any of the payload is
    buffered, so an oversized message costs the receiver nothing.
    """

    def __init__(self, length: int, limit: int) -> None:
        super().__init__(f"received message larger than max ({length} vs. {limit})")
        self.length = length
        self.limit = limit


def frame_header(length: int, compressed: bool = False) -> bytes:
    """The 5-byte prefix for a payload of ``length`` bytes."""
    return _pack_header(compressed, length)


def encode_message(payload: bytes, compressed: bool = False) -> bytes:
    """Prefix and payload as one ``bytes`` object (one copy of the payload)."""
    return _pack_header(compressed, len(payload)) + payload


class MessageDecoder:
    """Reassemble length-prefixed messages from arbitrarily split chunks.

    Chunks are kept as they arrived; a message that lies entirely within one
    chunk is returned as a ``memoryview`` slice of it, without copying. Only a
    message spread over several chunks is joined into a new ``bytes``.
    """

    __slots__ = ("_chunks", "_offset", "_buffered", "max_message_length", "_pending")

    def __init__(self, max_message_length: int | None = None) -> None:
        self._chunks: deque[bytes] = deque()
        self._offset = 0  # read position inside self._chunks[0]
        self._buffered = 0  # unread bytes over all chunks
        self.max_message_length = max_message_length
        self._pending: tuple[bool, int] | None = None  # parsed prefix awaiting its payload

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as messages."""
        return self._buffered

    @property
    def missing(self) -> int | None:
        """Payload bytes still to come for the message whose prefix was read; None between messages.

        Flow control uses it: a receiver that acknowledges data only per whole
        message must act when the rest of a message exceeds the peer's window.
        """
        if self._pending is None:
            return None
        return self._pending[1] - self._buffered

    @property
    def at_boundary(self) -> bool:
        """True when no partial message is buffered (a clean end of stream)."""
        return self._buffered == 0 and self._pending is None

    def feed(self, data: bytes) -> None:
        if data:
            self._chunks.append(data)
            self._buffered += len(data)

    def next_message(self) -> tuple[bool, bytes | memoryview] | None:
        """Return ``(compressed, payload)`` for the next whole message, or None.

        Raises :class:`MessageTooLarge` when a prefix exceeds the limit and
        :class:`FramingError` when the flag byte is neither 0 nor 1.
        """
        if self._pending is None:
            if self._buffered < HEADER_SIZE:
                return None
            flag, length = _unpack_header(self._take(HEADER_SIZE))
            if flag > 1:
                raise FramingError(f"invalid compressed flag 0x{flag:02x} in message prefix")
            limit = self.max_message_length
            if limit is not None and length > limit:
                raise MessageTooLarge(length, limit)
            self._pending = (flag == 1, length)
        compressed, length = self._pending
        if self._buffered < length:
            return None
        self._pending = None
        return compressed, self._take(length)

    def _take(self, n: int) -> bytes | memoryview:
        if n == 0:
            return b""
        self._buffered -= n
        chunks = self._chunks
        first = chunks[0]
        start = self._offset
        end = start + n
        first_len = len(first)
        if end < first_len:
            self._offset = end
            return memoryview(first)[start:end]
        if end == first_len:
            chunks.popleft()
            self._offset = 0
            return first if start == 0 else memoryview(first)[start:]
        # The piece spans several chunks: this is the only copy we make.
        parts: list[bytes | memoryview] = [memoryview(first)[start:]]
        chunks.popleft()
        self._offset = 0
        remaining = n - (first_len - start)
        while remaining:
            chunk = chunks[0]
            chunk_len = len(chunk)
            if chunk_len <= remaining:
                parts.append(chunk)
                chunks.popleft()
                remaining -= chunk_len
            else:
                parts.append(memoryview(chunk)[:remaining])
                self._offset = remaining
                remaining = 0
        return b"".join(parts)
