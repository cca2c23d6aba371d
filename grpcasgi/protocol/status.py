"""gRPC status codes, the HTTP-to-gRPC status mapping and ``grpc-message`` coding.

Everything here is defined by the gRPC specification (``statuscodes.md``,
``http-grpc-status-mapping.md`` and ``PROTOCOL-HTTP2.md``) and is shared by the
server and the client, so it lives in the sans-IO layer.
"""

from __future__ import annotations

import enum

__all__ = ["Status", "status_from_http", "encode_grpc_message", "decode_grpc_message"]


class Status(enum.Enum):
    """The 17 gRPC status codes; the value is the code sent in ``grpc-status``."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


#: ``grpc-status`` header values, precomputed: the trailers of every call need one.
STATUS_HEADER_VALUES: dict[Status, bytes] = {s: str(s.value).encode("ascii") for s in Status}
_STATUS_BY_HEADER: dict[bytes, Status] = {v: s for s, v in STATUS_HEADER_VALUES.items()}

_HTTP_TO_GRPC = {
    400: Status.INTERNAL,
    401: Status.UNAUTHENTICATED,
    403: Status.PERMISSION_DENIED,
    404: Status.UNIMPLEMENTED,
    429: Status.UNAVAILABLE,
    502: Status.UNAVAILABLE,
    503: Status.UNAVAILABLE,
    504: Status.UNAVAILABLE,
}


def status_from_http(http_status: int) -> Status:
    """Map a non-200 HTTP response status to the gRPC status a client reports.

    Used when a response arrives without ``grpc-status`` (a proxy or a plain
    HTTP server answered), as the gRPC HTTP-to-gRPC mapping document says.
    """
    return _HTTP_TO_GRPC.get(http_status, Status.UNKNOWN)


def status_from_header(value: bytes | str) -> Status:
    """Parse a ``grpc-status`` value; unknown or malformed codes become UNKNOWN."""
    if isinstance(value, str):
        value = value.encode("ascii", "replace")
    status = _STATUS_BY_HEADER.get(value)
    if status is not None:
        return status
    # Only plain digits: int() would also accept b" 0", b"-0", b"+0" and
    # b"0_0", turning garbage into OK. (bytes.isdigit() is ASCII-only.)
    if not (value.isdigit() and len(value) <= 10):
        return Status.UNKNOWN
    try:
        return Status(int(value))
    except ValueError:
        return Status.UNKNOWN


# Printable ASCII except '%' passes through unchanged; everything else is
# percent-encoded from its UTF-8 bytes (PROTOCOL-HTTP2.md, "Status-Message").
_SAFE = frozenset(range(0x20, 0x7F)) - {ord("%")}


def encode_grpc_message(message: str) -> bytes:
    """Percent-encode a status message for the ``grpc-message`` header.

    Lone surrogates (e.g. from a ``surrogateescape``-decoded file name in an
    exception message) cannot be UTF-8 encoded; they are replaced by ``?``
    rather than failing the trailers of the call.
    """
    raw = message.encode("utf-8", "replace")
    if all(b in _SAFE for b in raw):
        return raw
    return b"".join(bytes((b,)) if b in _SAFE else b"%%%02X" % b for b in raw)


def decode_grpc_message(value: bytes | str) -> str:
    """Decode a ``grpc-message`` value.

    Decoding is lenient, as the spec asks: a ``%`` not followed by two hex
    digits is kept literally, and invalid UTF-8 is replaced rather than refused,
    because the status message is for humans and must never fail a call.
    """
    if isinstance(value, str):
        value = value.encode("utf-8", "replace")
    if b"%" not in value:
        return value.decode("utf-8", "replace")
    out = bytearray()
    i, n = 0, len(value)
    while i < n:
        b = value[i]
        if b == 0x25 and i + 2 < n and _is_hex(value[i + 1 : i + 3]):
            out.append(int(value[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(b)
            i += 1
    return out.decode("utf-8", "replace")


def _is_hex(pair: bytes) -> bool:
    return len(pair) == 2 and all(c in b"0123456789abcdefABCDEF" for c in pair)
