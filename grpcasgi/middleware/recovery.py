"""Turn exceptions escaping handlers into chosen statuses, without leaking internals.

Without this middleware an unexpected exception ends the call UNKNOWN
("Internal Server Error", traceback logged by the runtime). With it, the
exception's type -- looked up along its MRO, so ``{LookupError: NOT_FOUND}``
also covers ``KeyError`` -- picks the status, and the client gets a generic
message for that status unless ``message=`` says otherwise: exception text
often contains paths, SQL or keys that must not reach clients.

``GRPCError`` is not touched (handlers raise it to choose a status
themselves; the endpoint already turned it into an end event), nor is
cancellation.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Mapping, Union

from ..exceptions import GRPCError
from ..protocol.status import Status
from ..types import Receive, Scope, Send, SendEvent
from .base import send_status

__all__ = ["ErrorMappingMiddleware", "DEFAULT_MAPPING", "generic_message"]

log = logging.getLogger("grpcasgi.middleware.errors")

#: Mappings that are right for almost any service; extend with ``{**DEFAULT_MAPPING, ...}``.
DEFAULT_MAPPING: Mapping[type[BaseException], Status] = {
    NotImplementedError: Status.UNIMPLEMENTED,
    PermissionError: Status.PERMISSION_DENIED,
    TimeoutError: Status.DEADLINE_EXCEEDED,
    asyncio.TimeoutError: Status.DEADLINE_EXCEEDED,  # a distinct class before Python 3.11
}

_GENERIC = {
    Status.CANCELLED: "Cancelled",
    Status.UNKNOWN: "Internal Server Error",
    Status.INVALID_ARGUMENT: "Invalid argument",
    Status.DEADLINE_EXCEEDED: "Deadline exceeded",
    Status.NOT_FOUND: "Not found",
    Status.ALREADY_EXISTS: "Already exists",
    Status.PERMISSION_DENIED: "Permission denied",
    Status.RESOURCE_EXHAUSTED: "Resource exhausted",
    Status.FAILED_PRECONDITION: "Failed precondition",
    Status.ABORTED: "Aborted",
    Status.OUT_OF_RANGE: "Out of range",
    Status.UNIMPLEMENTED: "Not implemented",
    Status.INTERNAL: "Internal error",
    Status.UNAVAILABLE: "Service unavailable",
    Status.DATA_LOSS: "Data loss",
    Status.UNAUTHENTICATED: "Unauthenticated",
}


def generic_message(exc: BaseException, status: Status) -> str:
    """The default status message: a fixed text per status, nothing from ``exc``."""
    return _GENERIC.get(status, status.name.replace("_", " ").capitalize())


MessageFor = Callable[[BaseException, Status], str]
#: A status, or a function building the GRPCError (to choose message/details per exception).
MappingValue = Union[Status, Callable[[BaseException], GRPCError]]

_SERVER_SIDE = frozenset({Status.UNKNOWN, Status.INTERNAL, Status.DATA_LOSS})


class ErrorMappingMiddleware:
    """Map exception types to statuses.

    ``mapping`` values are a :class:`Status` or ``fn(exc) -> GRPCError`` for
    full control. Unmapped exceptions get ``default`` (UNKNOWN), or, with
    ``default=None``, propagate to the runtime unchanged. ``message`` is a
    fixed string or ``fn(exc, status) -> str``; the default,
    :func:`generic_message`, never includes the exception's text.

    Statuses UNKNOWN, INTERNAL and DATA_LOSS are logged with the traceback at
    ERROR on ``grpcasgi.middleware.errors``; the others at INFO without it
    (they describe the request, not a bug).
    """

    def __init__(
        self,
        app: Any,
        *,
        mapping: Mapping[type[BaseException], MappingValue] | None = None,
        default: Status | None = Status.UNKNOWN,
        message: str | MessageFor | None = None,
    ) -> None:
        mapping = dict(DEFAULT_MAPPING if mapping is None else mapping)
        for exc_type, value in mapping.items():
            if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
                raise TypeError(f"ErrorMappingMiddleware keys must be exception types, got {exc_type!r}")
            if issubclass(exc_type, GRPCError):
                raise TypeError("GRPCError already carries its status and cannot be mapped")
            if not isinstance(value, Status) and not callable(value):
                raise TypeError(f"mapping value for {exc_type.__name__} must be a Status or a callable")
        self.app = app
        self.mapping = mapping
        self.default = default
        if message is None:
            self.message: MessageFor = generic_message
        elif isinstance(message, str):
            fixed = message
            self.message = lambda exc, status: fixed
        else:
            self.message = message

    def lookup(self, exc: BaseException) -> GRPCError | None:
        """The error to end the call with, or None to let ``exc`` propagate."""
        for cls in type(exc).__mro__:
            value = self.mapping.get(cls)
            if value is None:
                continue
            if isinstance(value, Status):
                return GRPCError(value, self.message(exc, value))
            return value(exc)
        if self.default is None:
            return None
        return GRPCError(self.default, self.message(exc, self.default))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ended = False

        async def tracking_send(event: SendEvent) -> None:
            nonlocal ended
            if event["type"] == "grpc.response.end":
                ended = True
            await send(event)

        try:
            await self.app(scope, receive, tracking_send)
        except GRPCError:
            raise
        except Exception as exc:
            if ended:
                raise  # the client already has its status; the runtime logs this
            error = self.lookup(exc)
            if error is None:
                raise
            if error.status in _SERVER_SIDE:
                log.error(
                    "%s: %s mapped to %s", scope["path"], type(exc).__name__, error.status.name, exc_info=exc
                )
            else:
                log.info("%s: %s mapped to %s", scope["path"], type(exc).__name__, error.status.name)
            await send_status(send, error.status, error.message, error.details)
