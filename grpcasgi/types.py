"""The call contract: scope and event types (see ``docs/spec.md``).

A gRPC call is ``await app(scope, receive, send)``. These TypedDicts are the
whole vocabulary; the server runtimes produce them and middleware and the
handler endpoint consume them.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Literal, MutableMapping, TypedDict, Union

from multidict import MultiDict

from ._version import __version__
from .const import Cardinality, Handler
from .deadline import Deadline
from .peer import Peer
from .protocol.metadata import MetadataLike, MetadataValue
from .protocol.status import Status

__all__ = [
    "SPEC_VERSION",
    "Scope",
    "ClientScope",
    "ReceiveEvent",
    "SendEvent",
    "Receive",
    "Send",
    "App",
    "RequestMessageEvent",
    "RequestEndEvent",
    "DisconnectEvent",
    "ResponseStartEvent",
    "ResponseMessageEvent",
    "ResponseEndEvent",
]

#: Version of the scope/event contract in docs/spec.md.
SPEC_VERSION = "1.0"


class VersionInfo(TypedDict):
    #: The grpcasgi release that made the scope (informational).
    version: str
    #: The version of this contract (``docs/spec.md``).
    spec_version: str


VERSION_INFO: VersionInfo = {"version": __version__, "spec_version": SPEC_VERSION}


class Scope(TypedDict):
    """One server call. Created by the runtime, routed, then passed down the stack."""

    type: Literal["grpc"]
    grpcasgi: VersionInfo
    #: ``"bundled"`` (grpcasgi's own HTTP/2 server) or ``"asgi"``.
    runtime: str
    #: Full method path, ``/package.Service/Method``.
    path: str
    service: str
    method: str
    #: The routed method; None when no service implements ``path``.
    handler: Handler | None
    cardinality: Cardinality | None
    request_type: Any
    reply_type: Any
    metadata: MultiDict[MetadataValue]
    deadline: Deadline | None
    peer: Peer
    user_agent: str | None
    authority: str | None
    content_type: str
    #: Request ``grpc-encoding`` (None for identity).
    encoding: str | None
    accept_encoding: tuple[str, ...]
    extensions: dict[str, Any]
    #: Per-call values that middleware sets and the handler reads (``stream.state``).
    state: dict[str, Any]


class ClientScope(TypedDict):
    """One client call, passed down the channel's middleware stack."""

    type: Literal["grpc.client"]
    grpcasgi: VersionInfo
    path: str
    service: str
    method: str
    cardinality: Cardinality
    request_type: Any
    reply_type: Any
    #: Outgoing request metadata; middleware may change it before the call starts.
    metadata: MultiDict[MetadataValue]
    deadline: Deadline | None
    authority: str
    encoding: str | None
    extensions: dict[str, Any]
    state: dict[str, Any]


class _RequestMessageBase(TypedDict):
    type: Literal["grpc.request.message"]
    message: Any
    #: Wire size of the message (after decompression), for metrics.
    size: int


class RequestMessageEvent(_RequestMessageBase, total=False):
    #: Whether the message arrived compressed (its flag in the length
    #: prefix), with the call's ``scope["encoding"]``. Set by both runtimes.
    compressed: bool


class RequestEndEvent(TypedDict):
    type: Literal["grpc.request.end"]


class DisconnectEvent(TypedDict):
    type: Literal["grpc.disconnect"]


class _ResponseStartBase(TypedDict):
    type: Literal["grpc.response.start"]


class ResponseStartEvent(_ResponseStartBase, total=False):
    metadata: MetadataLike | None
    #: Encoding of the response messages: ``"gzip"``, ``"deflate"``, or
    #: ``"identity"``/None for none. Used only if the client accepts it
    #: (``scope["accept_encoding"]``), else the response is not compressed.
    #: Absent: answer in the request's encoding when the client accepts it.
    compression: str | None


class _ResponseMessageBase(TypedDict):
    type: Literal["grpc.response.message"]
    message: Any


class ResponseMessageEvent(_ResponseMessageBase, total=False):
    #: ``False`` sends this message uncompressed (flag 0) even though the
    #: response has an encoding; absent or ``True`` compresses it when the
    #: response has one (per-message control, as grpcio's
    #: ``disable_next_message_compression``).
    compress: bool


class _ResponseEndBase(TypedDict):
    type: Literal["grpc.response.end"]
    status: Status


class ResponseEndEvent(_ResponseEndBase, total=False):
    message: str | None
    details: Any
    metadata: MetadataLike | None
    #: Reset the stream (RST_STREAM CANCEL) instead of sending trailers.
    reset: bool


ReceiveEvent = Union[RequestMessageEvent, RequestEndEvent, DisconnectEvent]
SendEvent = Union[ResponseStartEvent, ResponseMessageEvent, ResponseEndEvent]
Receive = Callable[[], Awaitable[ReceiveEvent]]
Send = Callable[[SendEvent], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]
ClientApp = Callable[[ClientScope, Receive, Send], Awaitable[None]]
State = MutableMapping[str, Any]
