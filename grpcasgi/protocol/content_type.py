"""gRPC content types: ``application/grpc`` and ``application/grpc+<codec>``."""

from __future__ import annotations

__all__ = ["GRPC_CONTENT_TYPE", "parse_content_type", "content_type_for", "is_grpc_content_type"]

GRPC_CONTENT_TYPE = b"application/grpc"
_PREFIX = b"application/grpc"


def parse_content_type(value: bytes | str | None) -> str | None:
    """Return the codec subtype named by a gRPC content type, or None if not gRPC.

    ``application/grpc`` means protobuf, so it returns ``"proto"``;
    ``application/grpc+json`` returns ``"json"``. Parameters after ``;`` are
    ignored, as the spec allows. Anything else (including ``application/grpc-web``)
    is not a gRPC content type and returns None.
    """
    if value is None:
        return None
    if isinstance(value, str):
        value = value.encode("latin-1", "replace")
    value = value.split(b";", 1)[0].strip().lower()
    if value == _PREFIX:
        return "proto"
    if value.startswith(b"application/grpc+") and len(value) > len(_PREFIX) + 1:
        return value[len(_PREFIX) + 1 :].decode("ascii", "replace")
    return None


def is_grpc_content_type(value: bytes | str | None) -> bool:
    return parse_content_type(value) is not None


def content_type_for(codec_name: str) -> bytes:
    """The content type a peer sends for a codec (``proto`` uses the bare type)."""
    if codec_name == "proto":
        return GRPC_CONTENT_TYPE
    return _PREFIX + b"+" + codec_name.encode("ascii")
