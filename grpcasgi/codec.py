"""Codecs turn messages into bytes and back; status-details codecs do the same
for the rich error details carried in ``grpc-status-details-bin``.

The content type of a call names its codec: ``application/grpc`` (or
``application/grpc+proto``) is protobuf, ``application/grpc+json`` is the
protobuf JSON mapping. A codec is any object with the three members of
:class:`CodecBase`; servers answer in the codec the request named.
"""

from __future__ import annotations

import abc
from typing import Any

from .protocol.status import Status

__all__ = [
    "CodecBase",
    "ProtoCodec",
    "JSONCodec",
    "StatusDetailsCodecBase",
    "ProtoStatusDetailsCodec",
    "default_status_details_codec",
]


class CodecBase(abc.ABC):
    #: The ``+subtype`` of the content type; ``"proto"`` is sent as bare ``application/grpc``.
    __content_subtype__: str

    @abc.abstractmethod
    def encode(self, message: Any, message_type: Any) -> bytes:
        ...

    @abc.abstractmethod
    def decode(self, data: bytes | memoryview, message_type: Any) -> Any:
        ...


class ProtoCodec(CodecBase):
    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        if message_type is not None and type(message) is not message_type and not isinstance(
            message, message_type
        ):
            raise TypeError(f"message must be {message_type.__name__}, got {type(message).__name__}")
        data: bytes = message.SerializeToString()
        return data

    def decode(self, data: bytes | memoryview, message_type: Any) -> Any:
        return message_type.FromString(data)


class JSONCodec(CodecBase):
    """Protobuf messages in their canonical JSON mapping (``application/grpc+json``)."""

    __content_subtype__ = "json"

    def encode(self, message: Any, message_type: Any) -> bytes:
        from google.protobuf import json_format

        return json_format.MessageToJson(message, indent=None).encode("utf-8")

    def decode(self, data: bytes | memoryview, message_type: Any) -> Any:
        from google.protobuf import json_format

        return json_format.Parse(bytes(data).decode("utf-8"), message_type())


class StatusDetailsCodecBase(abc.ABC):
    @abc.abstractmethod
    def encode(self, status: Status, message: str | None, details: Any) -> bytes:
        ...

    @abc.abstractmethod
    def decode(self, status: Status, message: str | None, data: bytes) -> Any:
        ...


class ProtoStatusDetailsCodec(StatusDetailsCodecBase):
    """``google.rpc.Status`` with details as a list of protobuf messages.

    Needs ``googleapis-common-protos`` (the ``grpcasgi[rich]`` extra).
    Decoding resolves each ``Any`` through the default descriptor pool;
    details of unknown types are returned as the ``Any`` itself.
    """

    def encode(self, status: Status, message: str | None, details: Any) -> bytes:
        from google.rpc.status_pb2 import Status as StatusProto

        proto = StatusProto(code=status.value, message=message or "")
        for detail in details:
            proto.details.add().Pack(detail)
        data: bytes = proto.SerializeToString()
        return data

    def decode(self, status: Status, message: str | None, data: bytes) -> Any:
        from google.protobuf import symbol_database
        from google.rpc import error_details_pb2  # noqa: F401  (registers the standard detail types)
        from google.rpc.status_pb2 import Status as StatusProto

        proto = StatusProto.FromString(data)
        db = symbol_database.Default()
        out = []
        for any_msg in proto.details:
            type_name = any_msg.type_url.split("/")[-1]
            try:
                cls = db.GetSymbol(type_name)
            except KeyError:
                out.append(any_msg)
                continue
            msg = cls()
            any_msg.Unpack(msg)
            out.append(msg)
        return out


def default_status_details_codec() -> StatusDetailsCodecBase | None:
    """:class:`ProtoStatusDetailsCodec` when ``googleapis-common-protos`` is installed."""
    try:
        import google.rpc.status_pb2  # noqa: F401
    except ImportError:
        return None
    return ProtoStatusDetailsCodec()
