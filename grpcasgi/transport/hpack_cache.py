"""An HPACK encoder that reuses the encoding of header lists it has sent before.

gRPC sends the same few header lists over and over: a client's request
headers for a method, a server's response headers and its ``grpc-status: 0``
trailers. ``hpack`` encodes each list header by header in Python (a table
search, integer and Huffman coding per field), which is one of the largest
costs of a small call on either side.

Once a list has been sent, every field of it is in the HPACK dynamic table
(or the static one), so sending it again produces the same indexed
representation and leaves the table untouched -- *as long as the table has
not changed in between*, since an addition shifts every dynamic index. The
table here counts its changes; an encoding is reused only when that count is
the one it was made with, and it is recorded only when making it changed
nothing. Anything else (a new header value, a resize, a field the peer must
never index) goes through ``hpack`` as before, so the bytes on the wire are
exactly those ``hpack`` would produce.
"""

from __future__ import annotations

from typing import Any

import hpack
from hpack.table import HeaderTable

__all__ = ["CachingEncoder"]

#: Header lists remembered per connection (a connection sends few distinct ones).
MAX_CACHED = 16


_set_maxsize: Any = HeaderTable.maxsize.fset  # type: ignore[attr-defined]


class _CountingTable(HeaderTable):
    """``hpack``'s header table, with a count of its changes."""

    def __init__(self) -> None:
        super().__init__()
        self.changes = 0

    def add(self, name: bytes, value: bytes) -> None:
        self.changes += 1
        super().add(name, value)

    @property
    def maxsize(self) -> int:
        return int(self._maxsize)

    @maxsize.setter
    def maxsize(self, newmax: int) -> None:
        self.changes += 1
        _set_maxsize(self, newmax)


class CachingEncoder(hpack.Encoder):
    """Drop-in for ``h2``'s ``conn.encoder``; assign it before any headers are sent."""

    def __init__(self) -> None:
        super().__init__()
        self._table = self.header_table = _CountingTable()
        self._cache: dict[Any, tuple[int, bytes]] = {}

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        table = self._table
        if table.resized or not isinstance(headers, list):
            return bytes(super().encode(headers, huffman))
        # HeaderTuple and NeverIndexedHeaderTuple compare equal as tuples:
        # their types are part of the key.
        key = (huffman, tuple(headers), tuple(map(type, headers)))
        changes = table.changes
        hit = self._cache.get(key)
        if hit is not None and hit[0] == changes:
            return hit[1]
        encoded = bytes(super().encode(headers, huffman))
        if table.changes == changes:
            cache = self._cache
            if len(cache) >= MAX_CACHED:
                cache.clear()
            cache[key] = (changes, encoded)
        return encoded
