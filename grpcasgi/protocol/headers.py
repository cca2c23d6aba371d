"""Request, response and trailer headers of a gRPC call, parsed and built.

Both server runtimes (the bundled HTTP/2 server and the ASGI adapter) and the
client share these functions, so the rules of ``PROTOCOL-HTTP2.md`` are
written once. Headers are ``(bytes, bytes)`` pairs with lowercase names, the
form both ``h2`` (with ``header_encoding=None``) and ASGI use.
"""

from __future__ import annotations

from base64 import b64encode
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from .compression import SUPPORTED_ENCODINGS, accept_encoding_header, parse_accept_encoding
from .content_type import parse_content_type
from .metadata import InvalidMetadata, MetadataValue, decode_binary_value, decode_metadata
from .status import (
    STATUS_HEADER_VALUES,
    Status,
    decode_grpc_message,
    encode_grpc_message,
    status_from_header,
    status_from_http,
)
from .timeout import InvalidTimeout, format_timeout, parse_timeout

__all__ = [
    "RequestHead",
    "RequestRejected",
    "parse_request",
    "response_headers",
    "trailers",
    "trailers_only",
    "request_headers",
    "ResponseHead",
    "TrailersInfo",
    "parse_response_headers",
    "parse_trailers",
]

Headers = Sequence[tuple[bytes, bytes]]


@dataclass(slots=True)
class RequestHead:
    """What a server needs to know about a call, taken from its request headers."""

    path: str
    codec: str
    content_type: bytes
    timeout: float | None
    encoding: str | None
    accept_encoding: tuple[str, ...]
    user_agent: str | None
    authority: str | None
    metadata: list[tuple[str, MetadataValue]] = field(default_factory=list)


class RequestRejected(Exception):
    """A request the server answers without running the call.

    ``http_status`` is 200 for rejections expressed as a gRPC status
    (a trailers-only response); 405 and 415 are real HTTP errors because the
    peer may not be a gRPC client at all.
    """

    def __init__(self, http_status: int, status: Status, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.status = status
        self.message = message


def parse_request(
    method: bytes | str,
    path: str,
    headers: Iterable[tuple[bytes, bytes]],
) -> RequestHead:
    """Validate and parse a gRPC request.

    ``method`` and ``path`` are passed separately because ASGI hands them over
    outside the header list; the bundled server extracts them from the
    pseudo-headers first.
    """
    if method not in (b"POST", "POST"):
        raise RequestRejected(405, Status.INTERNAL, f"method {method!r} not allowed, gRPC uses POST")
    content_type = b""
    te = None
    timeout_raw = None
    encoding = None
    accept = None
    user_agent = None
    authority = None
    meta: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        if name.startswith(b":"):  # name[0] would fail on an empty name
            if name == b":authority":
                authority = value.decode("latin-1")
            continue
        if name == b"content-type":
            content_type = value
        elif name == b"te":
            te = value
        elif name == b"grpc-timeout":
            timeout_raw = value
        elif name == b"grpc-encoding":
            encoding = value.decode("ascii", "replace")
        elif name == b"grpc-accept-encoding":
            accept = value
        elif name == b"user-agent":
            user_agent = value.decode("latin-1")
            meta.append((name, value))
        elif name == b"host":
            authority = authority or value.decode("latin-1")
        else:
            meta.append((name, value))
    codec = parse_content_type(content_type)
    if codec is None:
        raise RequestRejected(415, Status.UNKNOWN, f"unsupported content-type {content_type!r}, expected application/grpc")
    if te != b"trailers":
        raise RequestRejected(400, Status.INTERNAL, "missing 'te: trailers' header (required by gRPC over HTTP/2)")
    timeout = None
    if timeout_raw is not None:
        try:
            timeout = parse_timeout(timeout_raw)
        except InvalidTimeout as exc:
            raise RequestRejected(200, Status.INTERNAL, str(exc)) from None
    try:
        metadata = decode_metadata(meta)
    except InvalidMetadata as exc:
        raise RequestRejected(200, Status.INTERNAL, str(exc)) from None
    if encoding == "identity":
        encoding = None
    return RequestHead(
        path=path,
        codec=codec,
        content_type=content_type,
        timeout=timeout,
        encoding=encoding,
        accept_encoding=parse_accept_encoding(accept),
        user_agent=user_agent,
        authority=authority,
        metadata=metadata,
    )


_ACCEPT_ENCODING = accept_encoding_header()


def response_headers(
    content_type: bytes,
    metadata: list[tuple[bytes, bytes]] | None = None,
    encoding: str | None = None,
    http2: bool = True,
) -> list[tuple[bytes, bytes]]:
    """Response headers (the first HEADERS frame of a normal response)."""
    headers = [(b":status", b"200")] if http2 else []
    headers.append((b"content-type", content_type))
    if encoding is not None:
        headers.append((b"grpc-encoding", encoding.encode("ascii")))
    headers.append((b"grpc-accept-encoding", _ACCEPT_ENCODING))
    if metadata:
        headers.extend(metadata)
    return headers


def trailers(
    status: Status,
    message: str | None = None,
    details: bytes | None = None,
    metadata: list[tuple[bytes, bytes]] | None = None,
) -> list[tuple[bytes, bytes]]:
    """The trailing HEADERS frame that ends every gRPC response."""
    headers = [(b"grpc-status", STATUS_HEADER_VALUES[status])]
    if message:
        headers.append((b"grpc-message", encode_grpc_message(message)))
    if details is not None:
        headers.append((b"grpc-status-details-bin", b64encode(details).rstrip(b"=")))
    if metadata:
        headers.extend(metadata)
    return headers


def trailers_only(
    status: Status,
    message: str | None = None,
    details: bytes | None = None,
    metadata: list[tuple[bytes, bytes]] | None = None,
    content_type: bytes = b"application/grpc",
    http2: bool = True,
) -> list[tuple[bytes, bytes]]:
    """A "Trailers-Only" response: one HEADERS frame with status and trailers."""
    head = [(b":status", b"200")] if http2 else []
    head.append((b"content-type", content_type))
    head.extend(trailers(status, message, details, metadata))
    return head


# --- client side -----------------------------------------------------------


def request_headers(
    *,
    path: str,
    authority: str,
    scheme: str,
    content_type: bytes,
    timeout: float | None = None,
    encoding: str | None = None,
    accept_encoding: Iterable[str] = SUPPORTED_ENCODINGS,
    user_agent: str | None = None,
    metadata: list[tuple[bytes, bytes]] | None = None,
) -> list[tuple[bytes, bytes]]:
    headers = [
        (b":method", b"POST"),
        (b":scheme", scheme.encode("ascii")),
        (b":path", path.encode("ascii")),
        (b":authority", authority.encode("ascii")),
        (b"content-type", content_type),
        (b"te", b"trailers"),
    ]
    if timeout is not None:
        headers.append((b"grpc-timeout", format_timeout(timeout).encode("ascii")))
    if encoding is not None and encoding != "identity":
        headers.append((b"grpc-encoding", encoding.encode("ascii")))
    headers.append((b"grpc-accept-encoding", accept_encoding_header(accept_encoding)))
    if user_agent:
        headers.append((b"user-agent", user_agent.encode("ascii", "replace")))
    if metadata:
        headers.extend(metadata)
    return headers


@dataclass(slots=True)
class TrailersInfo:
    status: Status
    message: str | None
    details: bytes | None
    metadata: list[tuple[str, MetadataValue]]


@dataclass(slots=True)
class ResponseHead:
    http_status: int
    codec: str | None
    encoding: str | None
    metadata: list[tuple[str, MetadataValue]]
    #: Set when the response is "Trailers-Only" or not a gRPC response at all.
    trailers: TrailersInfo | None = None


def parse_trailers(headers: Iterable[tuple[bytes, bytes]]) -> TrailersInfo:
    """Parse trailers; a missing ``grpc-status`` is reported as UNKNOWN."""
    status: Status | None = None
    message = None
    details = None
    meta: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        if name == b"grpc-status":
            status = status_from_header(value)
        elif name == b"grpc-message":
            message = decode_grpc_message(value)
        elif name == b"grpc-status-details-bin":
            try:
                details = decode_binary_value(value)
            except InvalidMetadata:
                details = None
        else:
            meta.append((name, value))
    try:
        metadata = decode_metadata(meta)
    except InvalidMetadata as exc:
        return TrailersInfo(Status.INTERNAL, f"invalid trailing metadata: {exc}", None, [])
    if status is None:
        return TrailersInfo(Status.UNKNOWN, message or "missing grpc-status in trailers", details, metadata)
    return TrailersInfo(status, message, details, metadata)


def parse_response_headers(headers: Headers, end_stream: bool) -> ResponseHead:
    """Parse the first HEADERS of a response.

    A non-200 ``:status`` is mapped to a gRPC status (unless the peer also
    sent ``grpc-status``); a HEADERS frame that ends the stream is a
    Trailers-Only response.
    """
    http_status = 0
    content_type = None
    encoding = None
    has_grpc_status = False
    rest: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        if name == b":status":
            try:
                http_status = int(value)
            except ValueError:
                http_status = 0
        elif name == b"content-type":
            content_type = value
        elif name == b"grpc-encoding":
            encoding = value.decode("ascii", "replace")
        else:
            if name == b"grpc-status":
                has_grpc_status = True
            rest.append((name, value))
    codec = parse_content_type(content_type)
    if http_status != 200 and not has_grpc_status:
        status = status_from_http(http_status)
        info = TrailersInfo(status, f"received HTTP status {http_status} instead of 200", None, [])
        return ResponseHead(http_status, codec, encoding, [], info)
    if codec is None and not has_grpc_status:
        info = TrailersInfo(
            Status.UNKNOWN, f"invalid content-type in response: {content_type!r}", None, []
        )
        return ResponseHead(http_status, codec, encoding, [], info)
    if end_stream or has_grpc_status:
        return ResponseHead(http_status, codec, encoding, [], parse_trailers(rest))
    try:
        metadata = decode_metadata(rest)
    except InvalidMetadata as exc:
        info = TrailersInfo(Status.INTERNAL, f"invalid response metadata: {exc}", None, [])
        return ResponseHead(http_status, codec, encoding, [], info)
    return ResponseHead(http_status, codec, encoding, metadata, None)

