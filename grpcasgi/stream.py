"""The server-side :class:`Stream` every handler receives (grpclib's API).

A ``Stream`` is a thin view over one call's scope and its (possibly
middleware-wrapped) ``receive`` and ``send``. It adds the conveniences and the
rules handlers expect: implicit initial metadata, one message for unary
replies, nothing after trailers.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Generic, TypeVar

from multidict import MultiDict

from .const import Cardinality
from .deadline import Deadline
from .exceptions import ProtocolError, StreamTerminatedError
from .peer import Peer
from .protocol.metadata import MetadataLike, MetadataValue
from .protocol.status import Status
from .types import Receive, ResponseStartEvent, Scope, Send

__all__ = ["Stream"]

_Req = TypeVar("_Req")
_Rep = TypeVar("_Rep")
_UNSET: Any = object()


class Stream(Generic[_Req, _Rep]):
    __slots__ = (
        "scope",
        "_receive",
        "_send",
        "_recv_done",
        "_start_sent",
        "_end_sent",
        "_sent_messages",
        "_compression",
        "_last_compressed",
    )

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send
        self._recv_done = False
        self._start_sent = False
        self._end_sent = False
        self._sent_messages = 0
        self._compression: Any = _UNSET
        self._last_compressed: bool | None = None

    # -- attributes -------------------------------------------------------

    @property
    def metadata(self) -> MultiDict[MetadataValue]:
        """Request metadata (invocation metadata in grpcio's terms)."""
        return self.scope["metadata"]

    @property
    def deadline(self) -> Deadline | None:
        return self.scope["deadline"]

    @property
    def peer(self) -> Peer:
        return self.scope["peer"]

    @property
    def user_agent(self) -> str | None:
        return self.scope["user_agent"]

    @property
    def state(self) -> dict[str, Any]:
        """Values middleware attached to this call (e.g. ``state["principal"]``)."""
        return self.scope["state"]

    @property
    def method(self) -> str:
        """Full method path, ``/package.Service/Method``."""
        return self.scope["path"]

    @property
    def cardinality(self) -> Cardinality | None:
        return self.scope["cardinality"]

    # -- receiving --------------------------------------------------------

    async def recv_message(self) -> _Req | None:
        """The next request message, or None once the client has finished sending."""
        if self._recv_done:
            return None
        event = await self._receive()
        if event["type"] == "grpc.request.message":
            self._last_compressed = event.get("compressed")
            message: _Req = event["message"]
            return message
        self._recv_done = True
        if event["type"] == "grpc.request.end":
            return None
        raise StreamTerminatedError("the client went away")

    def __aiter__(self) -> AsyncIterator[_Req]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[_Req]:
        while True:
            message = await self.recv_message()
            if message is None:
                return
            yield message

    @property
    def last_message_compressed(self) -> bool | None:
        """Whether the last request message arrived compressed (None before any, or if unknown)."""
        return self._last_compressed

    # -- sending ----------------------------------------------------------

    def set_compression(self, encoding: str | None) -> None:
        """Compress the reply messages with ``encoding`` (``"gzip"``, ``"deflate"``; None: don't).

        Call it before the first reply or initial metadata. It applies only if
        the client accepts the encoding; by default replies use the request's
        encoding. See ``docs/compression.md``.
        """
        if self._start_sent:
            raise ProtocolError("set_compression() must be called before initial metadata is sent")
        self._compression = encoding

    def _start_event(self, metadata: MetadataLike | None) -> ResponseStartEvent:
        event: ResponseStartEvent = {"type": "grpc.response.start", "metadata": metadata}
        if self._compression is not _UNSET:
            event["compression"] = self._compression
        return event

    async def send_initial_metadata(self, *, metadata: MetadataLike | None = None) -> None:
        if self._start_sent:
            raise ProtocolError("initial metadata was already sent")
        if self._end_sent:
            raise ProtocolError("the call is already finished")
        self._start_sent = True
        await self._send(self._start_event(metadata))

    async def send_message(self, message: _Rep, *, compress: bool = True) -> None:
        """Send a reply; ``compress=False`` sends this one uncompressed even if replies are compressed."""
        if self._end_sent:
            raise ProtocolError("cannot send a message: trailers were already sent")
        cardinality = self.scope["cardinality"]
        if self._sent_messages and cardinality is not None and not cardinality.server_streaming:
            raise ProtocolError("a unary method sends exactly one reply message")
        if not self._start_sent:
            self._start_sent = True
            await self._send(self._start_event(None))
        self._sent_messages += 1
        if compress:
            await self._send({"type": "grpc.response.message", "message": message})
        else:
            await self._send({"type": "grpc.response.message", "message": message, "compress": False})

    async def send_trailing_metadata(
        self,
        *,
        status: Status = Status.OK,
        status_message: str | None = None,
        status_details: Any = None,
        metadata: MetadataLike | None = None,
    ) -> None:
        """End the call. Without a prior message this is a Trailers-Only response.

        A unary method cannot end OK without its reply (grpclib refuses it
        too): grpcio clients would hand the caller ``None`` as the response.
        """
        if self._end_sent:
            raise ProtocolError("trailers were already sent")
        cardinality = self.scope["cardinality"]
        if status is Status.OK and not self._sent_messages and cardinality is not None and not cardinality.server_streaming:
            raise ProtocolError(f"{self.scope['path']}: a unary response with OK status requires a reply message")
        self._end_sent = True
        await self._send(
            {
                "type": "grpc.response.end",
                "status": status,
                "message": status_message,
                "details": status_details,
                "metadata": metadata,
            }
        )

    async def cancel(self) -> None:
        """Abort the call with RST_STREAM (CANCEL); the client sees CANCELLED."""
        if self._end_sent:
            return
        self._end_sent = True
        await self._send({"type": "grpc.response.end", "status": Status.CANCELLED, "reset": True})

    @property
    def trailers_sent(self) -> bool:
        return self._end_sent

    def __repr__(self) -> str:
        return f"<Stream {self.scope['path']}>"
