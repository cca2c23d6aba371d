"""Message and end-of-call handling shared by both server runtimes.

The bundled HTTP/2 server (``transport/h2server.py``) and the ASGI adapter
(``asgi.py``) move bytes differently, but what a request message decodes to,
what a reply message encodes to and which headers end a call must be the
same in both, or a service would behave differently depending on where it is
deployed. These functions are that common part; they do no I/O.

:class:`DecodingServerCall` is the common part of reading a request: how
``receive`` turns the bytes a runtime buffered into events, and a malformed
request into a status and a log line.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from typing import Any, ClassVar

from ..call import ServerCall
from ..codec import CodecBase, StatusDetailsCodecBase
from ..exceptions import GRPCError, ProtocolError
from ..protocol.compression import SUPPORTED_ENCODINGS, DecompressedTooLarge, compress, decompress
from ..protocol.framing import FramingError, MessageDecoder, MessageTooLarge, frame_header
from ..protocol.metadata import encode_metadata
from ..protocol.status import Status
from ..types import ReceiveEvent, RequestMessageEvent, Scope

__all__ = ["DecodingServerCall", "decode_request_message", "encode_reply_message", "end_of_call", "response_encoding"]

log = logging.getLogger("grpcasgi.server")


def decode_request_message(
    scope: Scope,
    codec: CodecBase,
    compressed: bool,
    payload: bytes | memoryview,
    max_length: int,
) -> RequestMessageEvent:
    """Decompress (bounded by ``max_length``) and decode one request message.

    Failures raise :class:`GRPCError` with the status grpcio uses for them
    (RESOURCE_EXHAUSTED when too large, INTERNAL otherwise). Calls without a
    routed handler get the raw bytes, so middleware can still inspect them.
    """
    if compressed:
        encoding = scope["encoding"]
        if encoding is None:
            log.warning("%s: compressed request message without grpc-encoding", scope["path"])
            raise GRPCError(Status.INTERNAL, "Compressed message received but no grpc-encoding was set")
        try:
            payload = decompress(encoding, payload, max_length)
        except DecompressedTooLarge as exc:
            log.warning("%s: %s", scope["path"], exc)
            raise GRPCError(Status.RESOURCE_EXHAUSTED, str(exc)) from None
        except ValueError as exc:
            log.warning("%s: could not decompress request message (%s): %s", scope["path"], encoding, exc)
            raise GRPCError(Status.INTERNAL, f"Could not decompress request message: {exc}") from None
    request_type = scope["request_type"]
    if request_type is None:
        return {"type": "grpc.request.message", "message": bytes(payload), "size": len(payload), "compressed": compressed}
    try:
        message = codec.decode(payload, request_type)
    except Exception as exc:
        log.warning("%s: could not decode request message: %r", scope["path"], exc)
        raise GRPCError(Status.INTERNAL, "Could not decode request message") from None
    return {"type": "grpc.request.message", "message": message, "size": len(payload), "compressed": compressed}


class DecodingServerCall(ServerCall):
    """A :class:`~grpcasgi.call.ServerCall` whose request bytes wait in a :class:`MessageDecoder`.

    Both runtimes feed the bytes they receive into ``_decoder`` and set
    ``_request_ended`` / ``_disconnected`` (then call :meth:`_wake`); this
    class owns what ``receive`` makes of them, so a bad request ends with the
    same status and log line on either runtime. What differs between them is
    explicit in three hooks: :meth:`_message_taken` (the bundled server
    returns the message's flow-control credit, the ASGI adapter may unpause
    its reader), :meth:`_before_wait` and :meth:`_discard_input`.
    """

    __slots__ = ("_codec", "_max_length", "_decoder", "_request_ended", "_disconnected", "_discard", "_waiter")

    #: Where the runtime logs a malformed request stream (its own logger).
    _log: ClassVar[logging.Logger]

    def __init__(self, scope: Scope, codec: CodecBase, max_receive_message_length: int) -> None:
        super().__init__(scope)
        self._codec = codec
        self._max_length = max_receive_message_length
        self._decoder = MessageDecoder(max_receive_message_length)
        self._request_ended = False  # the client ended its request stream
        self._disconnected = False  # the client went away (reset, http.disconnect)
        self._discard = False  # request data no longer matters (see _discard_input)
        self._waiter: asyncio.Future[None] | None = None

    @abc.abstractmethod
    def _message_taken(self, size: int) -> None:
        """A whole message of ``size`` payload bytes left the decoder (called before decoding it)."""

    @abc.abstractmethod
    def _before_wait(self) -> None:
        """``receive`` found no whole message and is about to wait for more bytes."""

    @abc.abstractmethod
    def _discard_input(self) -> None:
        """Drop what is buffered and all request data that follows; sets ``_discard``."""

    def _wake(self) -> None:
        """Let a waiting ``receive`` look at the decoder again."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def receive(self) -> ReceiveEvent:
        while True:
            if self._discard:
                return {"type": "grpc.disconnect"}
            try:
                item = self._decoder.next_message()
            except MessageTooLarge as exc:
                self._discard_input()
                self._log.warning("%s: %s", self.scope["path"], exc)
                raise GRPCError(Status.RESOURCE_EXHAUSTED, str(exc)) from None
            except FramingError as exc:
                self._discard_input()
                self._log.warning("%s: malformed request stream: %s", self.scope["path"], exc)
                raise GRPCError(Status.INTERNAL, f"Malformed request stream: {exc}") from None
            if item is not None:
                compressed, payload = item
                self._message_taken(len(payload))
                return decode_request_message(self.scope, self._codec, compressed, payload, self._max_length)
            if self._request_ended:
                if not self._decoder.at_boundary:
                    self._discard_input()
                    self._log.warning("%s: request stream ended inside a message", self.scope["path"])
                    raise GRPCError(Status.INTERNAL, "Incomplete message at the end of the request stream")
                return {"type": "grpc.request.end"}
            if self._disconnected:
                return {"type": "grpc.disconnect"}
            self._before_wait()
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None


_NOT_SET: Any = object()


def response_encoding(scope: Scope, requested: str | None = _NOT_SET) -> str | None:
    """The encoding of a call's response messages (None: uncompressed).

    By default the request's encoding, and only when the client accepts it
    (a client that sent no ``grpc-accept-encoding`` can still decode what it
    sent itself). ``requested`` is what the application asked for in
    ``grpc.response.start`` (``"compression"``): used when the client lists
    it in ``grpc-accept-encoding``, otherwise the response goes uncompressed,
    as grpc-core does, since compressing is never required for correctness.
    An encoding this implementation lacks is an application error.
    """
    accepted = scope["accept_encoding"]
    if requested is _NOT_SET:
        encoding = scope["encoding"]
        if encoding is None or encoding not in SUPPORTED_ENCODINGS:
            return None
        return encoding if not accepted or encoding in accepted else None
    if requested is None or requested == "identity":
        return None
    if requested not in SUPPORTED_ENCODINGS:
        raise ProtocolError(f"unsupported response compression {requested!r}; supported: {SUPPORTED_ENCODINGS}")
    if requested in accepted:
        return requested
    log.debug("%s: the client does not accept %r; answering uncompressed", scope["path"], requested)
    return None


def encode_reply_message(
    codec: CodecBase,
    message: Any,
    reply_type: Any,
    max_length: int | None,
    encoding: str | None,
) -> tuple[bytes, bytes]:
    """Encode (and compress when ``encoding`` is set) one reply: ``(prefix, payload)``.

    A reply over ``max_length`` raises RESOURCE_EXHAUSTED before anything is
    sent, as grpcio does.
    """
    data = codec.encode(message, reply_type)
    if max_length is not None and len(data) > max_length:
        raise GRPCError(Status.RESOURCE_EXHAUSTED, f"Sent message larger than max ({len(data)} vs. {max_length})")
    if encoding is not None:
        data = compress(encoding, data)
        return frame_header(len(data), True), data
    return frame_header(len(data)), data


def end_of_call(
    event: Any, status_details_codec: StatusDetailsCodecBase | None
) -> tuple[Status, str | None, bytes | None, list[tuple[bytes, bytes]] | None]:
    """The parts of a ``grpc.response.end`` event that go into trailers.

    Returns ``(status, message, details_bin, metadata)`` ready for
    :func:`~grpcasgi.protocol.headers.trailers` and ``trailers_only``;
    details are encoded only for non-OK statuses and when a codec is set.
    """
    status: Status = event["status"]
    message = event.get("message")
    details = event.get("details")
    metadata = event.get("metadata")
    details_bin = None
    if details is not None and status_details_codec is not None and status is not Status.OK:
        details_bin = status_details_codec.encode(status, message, details)
    encoded = encode_metadata(metadata) if metadata else None
    return status, message, details_bin, encoded
