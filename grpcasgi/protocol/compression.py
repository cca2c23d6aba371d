"""Message compression (``compression.md``): identity, gzip and deflate.

Compression is per message (the flag in the length prefix) with the algorithm
named once per call in ``grpc-encoding``. Decompression is bounded: a few
kilobytes of zeros inflate to gigabytes, so the output is capped at the
receiver's message-size limit and exceeding it raises :class:`DecompressedTooLarge`.
"""

from __future__ import annotations

import zlib
from typing import Iterable

__all__ = [
    "SUPPORTED_ENCODINGS",
    "compress",
    "decompress",
    "UnsupportedEncoding",
    "DecompressedTooLarge",
    "parse_accept_encoding",
    "accept_encoding_header",
]

#: Encodings this implementation understands, in order of preference.
SUPPORTED_ENCODINGS: tuple[str, ...] = ("identity", "gzip", "deflate")


class UnsupportedEncoding(ValueError):
    def __init__(self, encoding: str) -> None:
        super().__init__(f"unsupported grpc-encoding {encoding!r}")
        self.encoding = encoding


class DecompressedTooLarge(ValueError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"decompressed message larger than max ({limit})")
        self.limit = limit


def _wbits(encoding: str) -> int:
    if encoding == "gzip":
        return 31  # gzip header and trailer
    if encoding == "deflate":
        return 15  # zlib format, as grpc-core's "deflate" uses
    raise UnsupportedEncoding(encoding)


def compress(encoding: str, data: bytes | memoryview) -> bytes:
    if encoding == "identity":
        return bytes(data)
    comp = zlib.compressobj(6, zlib.DEFLATED, _wbits(encoding))
    return comp.compress(data) + comp.flush()


def decompress(encoding: str, data: bytes | memoryview, limit: int | None) -> bytes:
    """Inflate ``data``; never produce more than ``limit`` bytes."""
    if encoding == "identity":
        return bytes(data)
    decomp = zlib.decompressobj(_wbits(encoding))
    max_length = 0 if limit is None else limit + 1
    try:
        out = decomp.decompress(data, max_length)
    except zlib.error as exc:
        raise ValueError(f"corrupt {encoding} message: {exc}") from None
    if limit is not None and (len(out) > limit or decomp.unconsumed_tail):
        raise DecompressedTooLarge(limit)
    if not decomp.eof:
        raise ValueError(f"truncated {encoding} message")
    if decomp.unused_data:
        # Bytes after the end of the compressed stream would otherwise be
        # dropped silently; grpc-core rejects them too ("not all input consumed").
        raise ValueError(f"corrupt {encoding} message: trailing data after the compressed stream")
    return out


def parse_accept_encoding(value: bytes | str | None) -> tuple[str, ...]:
    if not value:
        return ()
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return tuple(part.strip() for part in value.split(",") if part.strip())


def accept_encoding_header(encodings: Iterable[str] = SUPPORTED_ENCODINGS) -> bytes:
    return ",".join(encodings).encode("ascii")
