"""Custom metadata: validation, ``-bin`` base64 coding, reserved names.

Metadata travels as HTTP/2 headers. Keys are lowercase ``[0-9a-z_.-]``; keys
ending in ``-bin`` carry arbitrary bytes, base64 encoded on the wire (senders
omit padding, receivers accept it either way). Headers that belong to the
protocol itself are refused when an application tries to send them and
dropped when received, so user code never sees or forges them.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Iterable, Mapping, Sequence, Tuple, Union

__all__ = [
    "MetadataValue",
    "MetadataLike",
    "InvalidMetadata",
    "RESERVED_HEADERS",
    "encode_metadata",
    "decode_metadata",
    "is_reserved",
]

MetadataValue = Union[str, bytes]
#: What applications may pass as metadata: a mapping or a sequence of pairs
#: (a ``multidict.MultiDict`` is both).
MetadataLike = Union[Mapping[str, MetadataValue], Sequence[Tuple[str, MetadataValue]]]

# fullmatch, not match with "$": "$" also matches before a trailing newline,
# which let b"key\n" and b"value\n" through.
_KEY_RE = re.compile(rb"[0-9a-z_.\-]+")
_VALUE_RE = re.compile(rb"[\x20-\x7e]*")

#: Header names owned by HTTP/2 or by gRPC itself.
RESERVED_HEADERS = frozenset(
    {
        b"content-type",
        b"te",
        b"user-agent",
        b"host",
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"upgrade",
    }
)


class InvalidMetadata(ValueError):
    """A metadata key or value that cannot be sent or was received malformed."""


def is_reserved(key: bytes) -> bool:
    """True for pseudo-headers, ``grpc-*`` headers and HTTP/2 connection headers."""
    return key.startswith((b":", b"grpc-")) or key in RESERVED_HEADERS


def _pairs(metadata: MetadataLike) -> Iterable[tuple[str, MetadataValue]]:
    if isinstance(metadata, Mapping):
        # multidict's items() yields every value of repeated keys.
        return metadata.items()
    return metadata


def encode_metadata(metadata: MetadataLike | None) -> list[tuple[bytes, bytes]]:
    """Validate application metadata and encode it as header pairs.

    Raises :class:`InvalidMetadata` naming the offending key, so a mistake is
    reported where it was made instead of as a protocol error on the peer.
    """
    if not metadata:
        return []
    headers: list[tuple[bytes, bytes]] = []
    for key, value in _pairs(metadata):
        if not isinstance(key, str):
            raise InvalidMetadata(f"metadata key must be str, got {type(key).__name__}")
        bkey = key.encode("ascii", "replace")
        if not _KEY_RE.fullmatch(bkey):
            raise InvalidMetadata(f"invalid metadata key {key!r}: allowed characters are 0-9 a-z _ . -")
        if is_reserved(bkey):
            raise InvalidMetadata(f"metadata key {key!r} is reserved by gRPC or HTTP/2")
        if bkey.endswith(b"-bin"):
            if isinstance(value, str):
                raise InvalidMetadata(f"value of binary metadata key {key!r} must be bytes")
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise InvalidMetadata(f"value of {key!r} must be bytes, got {type(value).__name__}")
            bvalue = base64.b64encode(value).rstrip(b"=")
        else:
            if not isinstance(value, str):
                raise InvalidMetadata(
                    f"value of metadata key {key!r} must be str (use a '-bin' key for bytes)"
                )
            try:
                bvalue = value.encode("ascii")
            except UnicodeEncodeError:
                raise InvalidMetadata(f"value of metadata key {key!r} must be printable ASCII") from None
            if not _VALUE_RE.fullmatch(bvalue):
                raise InvalidMetadata(f"value of metadata key {key!r} must be printable ASCII")
            if bvalue[:1] == b" " or bvalue[-1:] == b" ":
                # RFC 9113 8.2.1: a field value may not start or end with
                # whitespace. Peers (h2, grpcio) treat such a header as a
                # malformed message; h2 even fails the whole connection.
                raise InvalidMetadata(
                    f"value of metadata key {key!r} must not start or end with a space (strip it)"
                )
        headers.append((bkey, bvalue))
    return headers


def decode_binary_value(value: bytes) -> bytes:
    """Decode a ``-bin`` value, padded or not."""
    value = value.strip()
    missing = -len(value) % 4
    try:
        return base64.b64decode(value + b"=" * missing, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidMetadata(f"invalid base64 in binary metadata value {value[:40]!r}") from None


def decode_metadata(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, MetadataValue]]:
    """Turn received headers into application metadata.

    Reserved headers are dropped (``user-agent`` is kept: applications and
    logs want it). Keys that are not valid metadata keys and values that are
    not printable ASCII raise :class:`InvalidMetadata`: the caller decides
    whether that fails the call.
    """
    out: list[tuple[str, MetadataValue]] = []
    for key, value in headers:
        if key.startswith((b":", b"grpc-")) or (key in RESERVED_HEADERS and key != b"user-agent"):
            continue
        if not _KEY_RE.fullmatch(key):
            raise InvalidMetadata(f"invalid metadata key {key[:40]!r}")
        skey = key.decode("ascii")
        if key.endswith(b"-bin"):
            out.append((skey, decode_binary_value(value)))
        else:
            if not _VALUE_RE.fullmatch(value):
                raise InvalidMetadata(f"invalid value for metadata key {skey!r}")
            out.append((skey, value.decode("ascii")))
    return out
