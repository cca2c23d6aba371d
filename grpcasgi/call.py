"""The call model shared by every server runtime.

``ServerCall`` runs one call: it owns the call's task, enforces its deadline
and turns however the app finished (normally, ``GRPCError``, another
exception, cancellation) into exactly one end of the response. The runtimes
(the bundled HTTP/2 server, the ASGI adapter) subclass it and provide
``receive``/``send`` over their transport; middleware composition and the
endpoint that calls the user's handler live here too, so both runtimes run
the same stack.
"""

from __future__ import annotations

import abc
import asyncio
import contextvars
import enum
import logging
from typing import Any, Iterator, Sequence

from multidict import MultiDict

from .deadline import Deadline, current_deadline, earliest
from .exceptions import GRPCError, StreamTerminatedError
from .peer import Peer
from .protocol.headers import RequestHead
from .protocol.status import Status
from .routing import Router
from .stream import Stream
from .timers import DeadlineTimer, deadline_timers
from .types import VERSION_INFO, App, Receive, ReceiveEvent, Scope, Send, SendEvent

__all__ = ["Middleware", "build_stack", "endpoint", "ServerCall", "CancelReason", "cancel_reason", "make_scope"]

log = logging.getLogger("grpcasgi.server")


class Middleware:
    """A middleware class and its options, instantiated when the stack is built.

    ``Middleware(LoggingMiddleware, log_payloads=True)`` in a list; the first
    entry is the outermost layer.
    """

    __slots__ = ("cls", "args", "kwargs")

    def __init__(self, cls: Any, *args: Any, **kwargs: Any) -> None:
        self.cls = cls
        self.args = args
        self.kwargs = kwargs

    def __iter__(self) -> Iterator[Any]:
        return iter((self.cls, self.args, self.kwargs))

    def __repr__(self) -> str:
        opts = ", ".join([*map(repr, self.args), *(f"{k}={v!r}" for k, v in self.kwargs.items())])
        return f"Middleware({getattr(self.cls, '__name__', self.cls)}{', ' if opts else ''}{opts})"


def build_stack(middleware: Sequence[Middleware], app: Any) -> Any:
    """Wrap ``app`` in ``middleware``, first entry outermost."""
    for entry in reversed(middleware):
        if not isinstance(entry, Middleware):
            raise TypeError(f"middleware entries must be Middleware(cls, **options), got {entry!r}")
        app = entry.cls(app, *entry.args, **entry.kwargs)
    return app


class CancelReason(enum.Enum):
    DEADLINE = "deadline"
    RESET = "reset"  # the client reset the stream
    DISCONNECT = "disconnect"  # the connection was lost
    SHUTDOWN = "shutdown"  # the server is closing


#: ``scope["extensions"]`` key under which the runtime records why it cancelled
#: a call, just before cancelling its task (see :func:`cancel_reason`).
CANCEL_REASON_KEY = "grpcasgi.cancel_reason"


def cancel_reason(scope: Scope) -> CancelReason | None:
    """Why the runtime cancelled this call, or None if it did not.

    Middleware that catches ``CancelledError`` calls this to tell a deadline
    from a client reset, a lost connection or a server shutdown. The reason
    lives in ``scope["extensions"]``, a dict shared by shallow copies of the
    scope, so it is visible at every layer.
    """
    reason = scope["extensions"].get(CANCEL_REASON_KEY)
    return reason if isinstance(reason, CancelReason) else None


_current_call: contextvars.ContextVar["ServerCall | None"] = contextvars.ContextVar(
    "grpcasgi_current_server_call", default=None
)


async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    """The innermost app: call the routed handler with a :class:`Stream`.

    ``GRPCError`` raised by the handler becomes the call's status here, so
    every middleware sees it as an ordinary ``grpc.response.end`` event;
    other exceptions propagate (middleware may observe or translate them) and
    the runtime reports them as UNKNOWN.
    """
    handler = scope["handler"]
    if handler is None:
        await send(
            {
                "type": "grpc.response.end",
                "status": Status.UNIMPLEMENTED,
                "message": f"Method not found: {scope['path']}",
            }
        )
        return
    call = _current_call.get()
    deadline = scope["deadline"]
    if call is not None and deadline is not call.armed_deadline:
        # Middleware assigned scope["deadline"]: re-arm (only shortening is
        # honoured) and let the handler and outgoing calls see the effective one.
        call.arm_deadline(deadline)
        deadline = scope["deadline"] = call.armed_deadline
    stream: Stream[Any, Any] = Stream(scope, receive, send)
    token = current_deadline.set(deadline)
    try:
        await handler.func(stream)
    except GRPCError as exc:
        if stream.trailers_sent:
            log.warning("%s raised %r after the call had ended; ignored", scope["path"], exc)
            return
        await stream.send_trailing_metadata(
            status=exc.status, status_message=exc.message, status_details=exc.details
        )
        return
    finally:
        current_deadline.reset(token)
    if not stream.trailers_sent:
        await stream.send_trailing_metadata()


def make_scope(
    head: RequestHead,
    router: Router,
    peer: Peer,
    runtime: str,
    extensions: dict[str, Any] | None = None,
) -> Scope:
    service, method, handler = router.resolve(head.path)
    return {
        "type": "grpc",
        "grpcasgi": VERSION_INFO,
        "runtime": runtime,
        "path": head.path,
        "service": service,
        "method": method,
        "handler": handler,
        "cardinality": handler.cardinality if handler is not None else None,
        "request_type": handler.request_type if handler is not None else None,
        "reply_type": handler.reply_type if handler is not None else None,
        "metadata": MultiDict(head.metadata),
        "deadline": Deadline.from_timeout(head.timeout) if head.timeout is not None else None,
        "peer": peer,
        "user_agent": head.user_agent,
        "authority": head.authority,
        "content_type": head.content_type.decode("latin-1"),
        "encoding": head.encoding,
        "accept_encoding": head.accept_encoding,
        "extensions": extensions if extensions is not None else {},
        "state": {},
    }


class ServerCall(abc.ABC):
    """Runtime-independent lifecycle of one server call.

    Subclasses implement :meth:`receive`, :meth:`send` (which must set
    ``response_started``/``response_ended``) and may override :meth:`closed`.
    """

    __slots__ = (
        "scope",
        "task",
        "cancel_reason",
        "armed_deadline",
        "_timer",
        "response_started",
        "response_ended",
        "_running",
    )

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.task: asyncio.Task[None] | None = None
        self.cancel_reason: CancelReason | None = None
        self.armed_deadline: Deadline | None = None
        self._timer: DeadlineTimer | None = None
        self.response_started = False
        self.response_ended = False
        self._running = False  # _run has begun

    @abc.abstractmethod
    async def receive(self) -> ReceiveEvent:
        """The next request event (the runtime's side of ``receive``)."""

    @abc.abstractmethod
    async def send(self, event: SendEvent) -> None:
        """Deliver one response event to the peer (the runtime's side of ``send``)."""

    def closed(self) -> None:
        """Called once when the call's task ends, whatever the outcome."""

    # -- lifecycle --------------------------------------------------------

    def start(self, app: App, loop: asyncio.AbstractEventLoop) -> asyncio.Task[None]:
        self.task = loop.create_task(self._run(app))
        return self.task

    def cancel(self, reason: CancelReason) -> None:
        task = self.task
        if task is not None and not task.done():
            if self.cancel_reason is None:
                self.cancel_reason = reason
                self.scope["extensions"][CANCEL_REASON_KEY] = reason
            if self._running:
                task.cancel()
            # Not started yet: a task cancelled before its first step never
            # runs its coroutine, not even the finally that closes the call,
            # so the call stayed registered on its connection for good (a
            # client resetting streams at once -- HTTP/2 "rapid reset" --
            # filled the connection with them). _run sees the reason instead.

    def arm_deadline(self, deadline: Deadline | None) -> None:
        """(Re)arm the deadline timer; middleware may have shortened the deadline.

        Only ever shortens: a later deadline, or None, keeps the armed one, so
        middleware cannot lift the deadline the client asked for.
        """
        deadline = earliest(deadline, self.armed_deadline)
        if deadline is self.armed_deadline:
            return
        self.armed_deadline = deadline
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if deadline is not None:
            # Shared slot timers, not a loop timer per call: nearly every
            # deadline is disarmed long before it expires (see timers.py).
            loop = asyncio.get_running_loop()
            self._timer = deadline_timers(loop).call_later(deadline.time_remaining(), self._expire)

    def _expire(self) -> None:
        self._timer = None
        self.cancel(CancelReason.DEADLINE)

    async def _run(self, app: App) -> None:
        self._running = True
        token = _current_call.set(self)
        if self.scope["deadline"] is not None:
            self.arm_deadline(self.scope["deadline"])
        try:
            if self.cancel_reason is not None:  # cancelled before it started
                raise asyncio.CancelledError
            await app(self.scope, self.receive, self.send)
        except GRPCError as exc:
            await self._end(exc.status, exc.message, exc.details)
        except asyncio.CancelledError:
            reason = self.cancel_reason
            if reason is None:
                raise
            task = self.task
            if task is not None and hasattr(task, "uncancel"):
                task.uncancel()
            if reason is CancelReason.DEADLINE:
                log.info("%s: deadline exceeded, handler cancelled", self.scope["path"])
                await self._end(Status.DEADLINE_EXCEEDED, "Deadline exceeded")
            elif reason is CancelReason.SHUTDOWN:
                await self._end(Status.UNAVAILABLE, "Server is shutting down")
        except StreamTerminatedError as exc:
            if self.cancel_reason in (CancelReason.RESET, CancelReason.DISCONNECT):
                # The client went away and the app, cancelled, still tried to
                # answer (e.g. turned CancelledError into a GRPCError): the
                # expected end of a cancelled call, not an application error.
                log.debug("%s: not answered, the client is gone: %s", self.scope["path"], exc)
            else:
                log.exception("Application error while handling %s", self.scope["path"])
                await self._end(Status.UNKNOWN, "Internal Server Error")
        except Exception:
            log.exception("Application error while handling %s", self.scope["path"])
            await self._end(Status.UNKNOWN, "Internal Server Error")
        else:
            if not self.response_ended:
                log.error("%s: the app returned without ending the call", self.scope["path"])
                await self._end(Status.UNKNOWN, "Internal Server Error")
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self.closed()
            # The task keeps its context after it ends; without this reset
            # call -> task -> context -> call is a cycle, and every call's
            # objects waited for the cyclic garbage collector.
            _current_call.reset(token)

    async def _end(self, status: Status, message: str | None, details: Any = None) -> None:
        if self.response_ended:
            return
        try:
            await self.send({"type": "grpc.response.end", "status": status, "message": message, "details": details})
        except Exception as exc:  # the stream may already be gone
            log.debug("%s: could not send status %s: %r", self.scope["path"], status.name, exc)
