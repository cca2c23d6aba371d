"""Observing a call from a middleware: how it ended, how long it took, what passed.

A call can end in five ways (``docs/spec.md``, "How a call ends"): a
``grpc.response.end`` event passes through ``send``; an inner layer raises
``GRPCError``; an inner layer raises another exception; the runtime cancels
the call's task (deadline, client reset, lost connection, shutdown); or,
wrongly, the stack returns without ending the call. Logging, metrics and
tracing middleware all need the same answer -- *which status did this call
end with?* -- so :class:`CallObserver` computes it once, the same way
everywhere, as a :class:`CallOutcome`::

    class TimingMiddleware:
        def __init__(self, app: App) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            def done(outcome: CallOutcome) -> None:
                print(scope["path"], outcome.status.name, outcome.duration_ms)

            async with CallObserver(scope, receive, send, on_end=done) as call:
                await self.app(scope, call.receive, call.send)

The observer never changes the call: events and exceptions pass through
untouched, and an exception raised by a callback is logged, not propagated.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Awaitable, Callable

from ..call import CancelReason, cancel_reason
from ..exceptions import GRPCError
from ..protocol.metadata import MetadataLike
from ..protocol.status import Status
from ..types import (
    Receive,
    ReceiveEvent,
    RequestMessageEvent,
    ResponseEndEvent,
    ResponseMessageEvent,
    Scope,
    Send,
    SendEvent,
)

__all__ = ["Ending", "CallOutcome", "CallObserver", "send_status", "peer_string"]

log = logging.getLogger("grpcasgi.middleware")

#: The status message the runtime sends for an exception it does not know
#: (``ServerCall``); observers report the same so logs match what clients see.
INTERNAL_ERROR_MESSAGE = "Internal Server Error"


class Ending(enum.Enum):
    """How a call ended, as seen from one layer of the stack."""

    #: A ``grpc.response.end`` event passed through ``send``.
    EVENT = "event"
    #: An inner layer raised :class:`~grpcasgi.GRPCError`; the runtime sends its status.
    GRPC_ERROR = "grpc_error"
    #: An inner layer raised another exception; the runtime sends UNKNOWN.
    EXCEPTION = "exception"
    #: The call's task was cancelled (see :attr:`CallOutcome.cancel_reason`).
    CANCELLED = "cancelled"
    #: The stack returned without ending the call (a bug); the runtime sends UNKNOWN.
    INCOMPLETE = "incomplete"


_CANCEL_STATUS: dict[CancelReason | None, tuple[Status, str]] = {
    CancelReason.DEADLINE: (Status.DEADLINE_EXCEEDED, "Deadline exceeded"),
    CancelReason.RESET: (Status.CANCELLED, "Cancelled by the client"),
    CancelReason.DISCONNECT: (Status.CANCELLED, "The connection was lost"),
    CancelReason.SHUTDOWN: (Status.UNAVAILABLE, "Server is shutting down"),
    None: (Status.CANCELLED, "Cancelled"),
}


@dataclass(frozen=True)
class CallOutcome:
    """The final state of one call, from the point of view of the observing layer.

    ``status`` is what this layer passed outwards (or, when an exception
    escaped, what the runtime will send for it); a layer further out may
    still translate it.
    """

    status: Status
    message: str | None
    details: Any
    #: Trailing metadata of the end event, if the call ended with one.
    trailing_metadata: MetadataLike | None
    ending: Ending
    #: The exception that escaped the inner layers, if any (also set when the
    #: call had already ended with an event and the handler then raised).
    error: BaseException | None
    #: Why the runtime cancelled the call, when it did.
    cancel_reason: CancelReason | None
    #: Seconds from the observer's creation until the inner layers returned or raised.
    duration: float
    request_messages: int
    response_messages: int
    #: Sum of the request messages' wire sizes (after decompression).
    request_bytes: int
    #: Sum of ``ByteSize()`` of the reply messages (protobuf's serialized size;
    #: messages without ``ByteSize`` are not counted).
    response_bytes: int
    #: Whether response headers (``grpc.response.start``) were sent.
    response_started: bool

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    @property
    def duration_ms(self) -> float:
        return self.duration * 1000.0


_new_object = object.__new__

OnEnd = Callable[[CallOutcome], None]
OnRequest = Callable[[RequestMessageEvent], None]
OnResponse = Callable[[ResponseMessageEvent], None]


class CallObserver:
    """Watch one call at one layer: wrap its ``receive``/``send``, then classify its end.

    Pass :attr:`receive` and :attr:`send` (bound methods) to the inner app.
    Used as an async context manager, the outcome is computed when the block
    exits -- normally or by an exception, which then continues to propagate
    -- and handed to ``on_end``. Without the context manager, call
    :meth:`finish` yourself with the exception (or None).

    ``on_request``/``on_response`` see each message event as it passes (for
    payload logging or per-message trace events). Callbacks run
    synchronously in the call's task and must not block; their exceptions
    are logged and swallowed so that observing never changes a call.

    ``reply_sizes=False`` leaves :attr:`CallOutcome.response_bytes` at 0, for
    observers that do not report it: protobuf computes ``ByteSize()`` by
    walking the message.

    Of the scope it reads only ``path`` and ``extensions`` (for the cancel
    reason), which client scopes have too: client middleware use it the same way.
    """

    __slots__ = (
        "scope",
        "_receive",
        "_send",
        "_on_end",
        "_on_request",
        "_on_response",
        "_clock",
        "started",
        "request_messages",
        "response_messages",
        "request_bytes",
        "response_bytes",
        "response_started",
        "_reply_sizes",
        "end_event",
        "outcome",
    )

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        on_end: OnEnd | None = None,
        on_request: OnRequest | None = None,
        on_response: OnResponse | None = None,
        clock: Callable[[], float] = time.perf_counter,
        reply_sizes: bool = True,
    ) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send
        self._on_end = on_end
        self._on_request = on_request
        self._on_response = on_response
        self._clock = clock
        self.started = clock()
        self.request_messages = 0
        self.response_messages = 0
        self.request_bytes = 0
        self.response_bytes = 0
        self.response_started = False
        self._reply_sizes = reply_sizes
        #: The end event once it has been passed on successfully.
        self.end_event: ResponseEndEvent | None = None
        #: Set by :meth:`finish`.
        self.outcome: CallOutcome | None = None

    async def receive(self) -> ReceiveEvent:
        event = await self._receive()
        if event["type"] == "grpc.request.message":
            self.request_messages += 1
            self.request_bytes += event["size"]
            if self._on_request is not None:
                self._call(self._on_request, event)
        return event

    def send(self, event: SendEvent) -> Awaitable[None]:
        """Count the event and pass it on.

        Not a coroutine: for initial metadata and messages it returns the
        inner ``send``'s awaitable itself, so observing adds no coroutine
        frame per message (messages are counted as they are passed on, like
        the inner ``send``'s own return means only "queued"). Only the end
        event is recorded after it has been passed on successfully: an end
        that failed to go out must not be reported as the call's status.
        """
        kind = event["type"]
        if kind == "grpc.response.message":
            if self._on_response is not None:
                self._call(self._on_response, event)
            self.response_messages += 1
            self.response_started = True
            if self._reply_sizes:
                size = getattr(event["message"], "ByteSize", None)  # type: ignore[typeddict-item]
                if size is not None:
                    try:
                        self.response_bytes += int(size())
                    except Exception:  # a message type with an unusual ByteSize
                        pass
            return self._send(event)
        if kind == "grpc.response.end":
            return self._send_end(event)  # type: ignore[arg-type]
        if kind == "grpc.response.start":
            self.response_started = True
        return self._send(event)

    async def _send_end(self, event: ResponseEndEvent) -> None:
        await self._send(event)
        if self.end_event is None:
            self.end_event = event

    def finish(self, error: BaseException | None = None) -> CallOutcome:
        """Classify the call; the first call fixes the outcome, later calls return it."""
        if self.outcome is not None:
            return self.outcome
        duration = self._clock() - self.started
        reason = cancel_reason(self.scope)
        end = self.end_event
        message: str | None
        details: Any = None
        trailing: MetadataLike | None = None
        if end is not None:
            ending = Ending.EVENT
            if end.get("reset"):
                status, message = Status.CANCELLED, end.get("message") or "Call reset by the server"
            else:
                status, message = end["status"], end.get("message")
                details = end.get("details")
            trailing = end.get("metadata")
        elif isinstance(error, GRPCError):
            ending = Ending.GRPC_ERROR
            status, message, details = error.status, error.message, error.details
        elif isinstance(error, asyncio.CancelledError):
            ending = Ending.CANCELLED
            status, message = _CANCEL_STATUS[reason]
        elif error is not None:
            ending = Ending.EXCEPTION
            status, message = Status.UNKNOWN, INTERNAL_ERROR_MESSAGE
        else:
            ending = Ending.INCOMPLETE
            status, message = Status.UNKNOWN, INTERNAL_ERROR_MESSAGE
        # Built without the frozen dataclass's __init__, which assigns its 13
        # fields through object.__setattr__ one by one: that cost 1.5 us per
        # call and observer, more than the rest of finish(). The instance is
        # the same (same __dict__, equality, repr); only this module does it.
        outcome = _new_object(CallOutcome)
        outcome.__dict__.update(
            {
                "status": status,
                "message": message,
                "details": details,
                "trailing_metadata": trailing,
                "ending": ending,
                "error": error,
                "cancel_reason": reason,
                "duration": duration,
                "request_messages": self.request_messages,
                "response_messages": self.response_messages,
                "request_bytes": self.request_bytes,
                "response_bytes": self.response_bytes,
                "response_started": self.response_started,
            }
        )
        self.outcome = outcome
        return outcome

    async def __aenter__(self) -> "CallObserver":
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        outcome = self.finish(exc)
        if self._on_end is not None:
            self._call(self._on_end, outcome)

    def _call(self, callback: Callable[[Any], None], arg: Any) -> None:
        try:
            callback(arg)
        except Exception:
            log.exception("%s: call observer callback %r failed", self.scope["path"], callback)


async def send_status(
    send: Send,
    status: Status,
    message: str | None = None,
    details: Any = None,
    metadata: MetadataLike | None = None,
) -> None:
    """End the call with ``status`` by sending a ``grpc.response.end`` event.

    What a middleware does to reject a call without running the layers
    inside it: outer layers observe an ordinary end event.
    """
    await send(
        {"type": "grpc.response.end", "status": status, "message": message, "details": details, "metadata": metadata}
    )


#: peer address -> its text: the calls of one connection share one address object.
_PEER_TEXT: dict[Any, str] = {}
_PEER_TEXT_MAX = 4096


def peer_string(scope: Scope) -> str:
    """The peer address as text: ``host:port``, ``[v6]:port``, a UNIX path or ``unknown``."""
    addr = scope["peer"].addr()
    try:
        return _PEER_TEXT[addr]
    except (KeyError, TypeError):  # TypeError: an unhashable address, never cached
        pass
    text = _peer_text(addr)
    if isinstance(addr, (tuple, str)):
        if len(_PEER_TEXT) >= _PEER_TEXT_MAX:
            _PEER_TEXT.clear()  # bounded: many short-lived client ports
        _PEER_TEXT[addr] = text
    return text


def _peer_text(addr: Any) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = str(addr[0])
        if ":" in host:
            return f"[{host}]:{addr[1]}"
        return f"{host}:{addr[1]}"
    if addr:
        return str(addr)
    return "unknown"
