"""One structured log record per call (an access log), optionally the payloads.

The record is emitted when the call ends, however it ends (a status sent,
an exception, a deadline, a client reset), with its fields in ``extra`` so
that JSON log formatters can emit them as keys:

========================  ==================================================
``method``                full path, ``/pkg.Service/Method``
``service``               ``pkg.Service``
``status``                status name (``OK``, ``NOT_FOUND``, ...)
``code``                  numeric status code
``status_message``        the status message, if any
``duration_ms``           milliseconds the call spent inside this layer
``peer``                  ``host:port`` of the client
``user_agent``            the client's user agent
``request_messages``      messages received
``response_messages``     messages sent
``error``                 type name of the exception that ended it, if any
``principal``             ``str(scope["state"]["principal"])`` when set (auth)
========================  ==================================================

The level follows the status: by default OK is INFO, errors the client
caused (INVALID_ARGUMENT, NOT_FOUND, CANCELLED, DEADLINE_EXCEEDED, ...) are
WARNING, server-side failures (UNKNOWN, INTERNAL, UNAVAILABLE, DATA_LOSS,
UNIMPLEMENTED) are ERROR. Tracebacks are not repeated here: the runtime
logs an unexpected exception once, on ``grpcasgi.server``.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Any, Callable, Mapping

from ..protocol.status import Status
from ..types import Receive, RequestMessageEvent, ResponseMessageEvent, Scope, Send
from .base import CallObserver, CallOutcome, peer_string
from .base import log as _log

__all__ = ["LoggingMiddleware", "DEFAULT_LEVELS", "default_level_for_status"]

#: Statuses that describe a problem on the server's side (logged at ERROR).
SERVER_ERRORS = frozenset(
    {Status.UNKNOWN, Status.INTERNAL, Status.UNAVAILABLE, Status.DATA_LOSS, Status.UNIMPLEMENTED}
)

#: The default level of each status.
DEFAULT_LEVELS: Mapping[Status, int] = {
    status: (
        logging.INFO if status is Status.OK else logging.ERROR if status in SERVER_ERRORS else logging.WARNING
    )
    for status in Status
}


#: ``(status.name, status.value)``: enum attribute lookups are slow (a
#: descriptor call each), and the access log needs three per call.
_NAME_AND_CODE: Mapping[Status, tuple[str, int]] = {status: (status.name, status.value) for status in Status}


def default_level_for_status(status: Status) -> int:
    return DEFAULT_LEVELS.get(status, logging.ERROR)


LevelForStatus = Callable[[Status], int]


def _format_payload(message: Any, limit: int) -> str:
    if isinstance(message, (bytes, bytearray, memoryview)):
        text = repr(bytes(message[: limit + 1]))
    else:
        try:
            from google.protobuf.message import Message
            from google.protobuf.text_format import MessageToString

            if isinstance(message, Message):
                text = "{" + MessageToString(message, as_one_line=True) + "}"
            else:
                text = repr(message)
        except Exception:  # a message that cannot print itself
            text = f"<{type(message).__name__}>"
    if len(text) > limit:
        text = text[:limit] + "..."
    return text


_ACCESS_FORMAT = "%s %s %.1fms peer=%s"
_PAYLOAD_FORMAT = "%s %s message %s"

_UNKNOWN_CALLER = ("(unknown file)", 0, "(unknown function)")

#: The attributes ``logging.LogRecord.__init__`` sets (3.10-3.13; ``taskName`` from 3.12).
_RECORD_FIELDS = frozenset(
    "name msg args levelname levelno pathname filename module exc_info exc_text stack_info lineno funcName "
    "created msecs relativeCreated thread threadName processName process".split()
)


class _RecordMaker:
    """Builds the records ``Logger.makeRecord`` would, for one call site, in a third of the time.

    Of a record's 20 attributes, most are the same for every record from one
    source line at one level: the name, level name, path, file and module
    names (derived from the path with ``os.path`` calls on every record). A
    prototype record is built once by the real ``LogRecord`` and copied; what
    changes is set per record the way ``LogRecord.__init__`` sets it: the
    creation time, thread, process and task. Used only while the record
    factory is ``logging.LogRecord`` itself and the prototype has exactly the
    attributes known here; otherwise (another Python, a custom factory set at
    any time) records come from ``makeRecord``.
    """

    __slots__ = ("_prototypes",)

    def __init__(self) -> None:
        #: (logger name, level, file, line, function) -> prototype attributes, or None if unusable
        self._prototypes: dict[tuple[str, int, str, int, str], dict[str, Any] | None] = {}

    def make(
        self,
        logger: logging.Logger,
        level: int,
        fn: str,
        lno: int,
        func: str,
        msg: str,
        args: tuple[Any, ...],
        extra: dict[str, Any],
    ) -> logging.LogRecord:
        """The record, with ``extra``'s items as attributes (a call site always passes the same keys)."""
        if logging.getLogRecordFactory() is logging.LogRecord:
            key = (logger.name, level, fn, lno, func)
            prototype = self._prototypes.get(key, _MISSING)
            if prototype is _MISSING:
                prototype = self._prototype(key, extra)
            if prototype is not None:
                return self._copy(prototype, msg, args, extra)
        record = logger.makeRecord(logger.name, level, fn, lno, msg, args, None, func)
        record.__dict__.update(extra)
        return record

    def _copy(
        self, prototype: dict[str, Any], msg: str, args: tuple[Any, ...], extra: dict[str, Any]
    ) -> logging.LogRecord:
        # The prototype has the extra keys too, so that the copy is sized for
        # them and the update below only replaces values.
        values = prototype.copy()
        values.update(extra)
        values["msg"] = msg
        values["args"] = args
        ns = _time_ns()
        created = values["created"] = ns / 1e9
        msecs = (ns % 1_000_000_000) // 1_000_000 + 0.0
        if msecs == 999.0 and int(created) != ns // 1_000_000_000:
            msecs = 0.0  # created rounded up to the next second (as 3.13's LogRecord corrects)
        values["msecs"] = msecs
        start = getattr(logging, "_startTime")
        if isinstance(start, int):  # 3.13+: nanoseconds
            values["relativeCreated"] = (ns - start) / 1e6
        else:
            values["relativeCreated"] = (created - start) * 1000
        if logging.logThreads:
            values["thread"] = _get_ident()
            values["threadName"] = _current_thread().name
        else:
            values["thread"] = values["threadName"] = None
        if logging.logMultiprocessing:
            mp = sys.modules.get("multiprocessing")
            name = "MainProcess"
            if mp is not None:
                try:
                    name = mp.current_process().name
                except Exception:  # as LogRecord: multiprocessing may be half imported
                    pass
            values["processName"] = name
        else:
            values["processName"] = None
        if logging.logProcesses:
            values["process"] = _PID[0] if _PID else _remember_pid()
        else:
            values["process"] = None
        if "taskName" in prototype:  # 3.12+
            task_name = None
            if getattr(logging, "logAsyncioTasks", False):
                asyncio = sys.modules.get("asyncio")
                if asyncio is not None:
                    try:
                        task = asyncio.current_task()
                        task_name = task.get_name() if task is not None else None
                    except Exception:
                        pass
            values["taskName"] = task_name
        record = _new_record(logging.LogRecord)
        record.__dict__ = values
        return record

    def _prototype(self, key: tuple[str, int, str, int, str], extra: dict[str, Any]) -> dict[str, Any] | None:
        name, level, fn, lno, func = key
        values = dict(logging.LogRecord(name, level, fn, lno, "", (), None, func).__dict__)
        prototype: dict[str, Any] | None
        if set(values) - {"taskName"} != _RECORD_FIELDS or not _RECORD_FIELDS.isdisjoint(extra):
            prototype = None  # a Python whose records have other attributes: not copied
        else:
            prototype = {**values, **dict.fromkeys(extra)}
        if len(self._prototypes) < 64:  # a few levels and call sites: bounded regardless
            self._prototypes[key] = prototype
        return prototype


#: os.getpid() is a system call per record in LogRecord; cached, forgotten in a forked child.
_PID: list[int] = []


def _remember_pid() -> int:
    _PID[:] = [os.getpid()]
    return _PID[0]


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_PID.clear)

_MISSING: Any = object()
_new_record = object.__new__
_time_ns = time.time_ns
_get_ident = threading.get_ident
_current_thread = threading.current_thread


def _emit(
    maker: _RecordMaker, logger: logging.Logger, level: int, msg: str, args: tuple[Any, ...], extra: dict[str, Any]
) -> None:
    """``logger.log(level, msg, *args, extra=extra)``, called from the caller's frame, in a fifth of the time.

    For an enabled level, ``Logger.log`` spends most of its time in
    ``findCaller``, which walks the stack (normalising each frame's file name)
    to find the source location of the call, in ``makeRecord``'s checks of
    every ``extra`` key against the record's attributes, and in building the
    record itself. Here the caller is known -- the frame calling this
    function -- and the keys are ours and never clash, so the record is built
    with the same location and attributes (by ``maker``, or ``makeRecord``
    under a custom record factory) and handed to ``Logger.handle`` (filters,
    handlers, propagation) as ``Logger._log`` would. Setting
    ``logging._srcfile = None`` (the logging documentation's optimisation)
    skips the location here too.
    """
    if logging._srcfile:
        frame = sys._getframe(1)
        code = frame.f_code
        fn, lno, func = code.co_filename, frame.f_lineno, code.co_name
    else:
        fn, lno, func = _UNKNOWN_CALLER
    logger.handle(maker.make(logger, level, fn, lno, func, msg, args, extra))


class LoggingMiddleware:
    """Log each call once when it ends; with ``log_payloads=True`` also each message.

    ``logger`` is a :class:`logging.Logger` or a logger name (default
    ``grpcasgi.access``). ``level_for_status`` is a mapping (merged over the
    defaults) or a function ``status -> level``. Payload records go out at
    ``payload_level`` (DEBUG) and are cut at ``max_payload_chars``: payloads
    may hold personal data or secrets, so enable them deliberately.
    """

    def __init__(
        self,
        app: Any,
        *,
        logger: logging.Logger | str | None = None,
        level_for_status: Mapping[Status, int] | LevelForStatus | None = None,
        log_payloads: bool = False,
        payload_level: int = logging.DEBUG,
        max_payload_chars: int = 1024,
    ) -> None:
        self.app = app
        if logger is None or isinstance(logger, str):
            logger = logging.getLogger(logger or "grpcasgi.access")
        self.logger = logger
        #: The highest level an access record can have; None when unknown (a function).
        self._highest_level: int | None
        if level_for_status is None:
            self.level_for_status: LevelForStatus = default_level_for_status
            self._highest_level = max(logging.ERROR, *DEFAULT_LEVELS.values())
        elif callable(level_for_status):
            self.level_for_status = level_for_status
            self._highest_level = None
        else:
            levels = {**DEFAULT_LEVELS, **level_for_status}
            self.level_for_status = lambda status: levels.get(status, logging.ERROR)
            self._highest_level = max(logging.ERROR, *levels.values())
        self.log_payloads = log_payloads
        self.payload_level = payload_level
        self.max_payload_chars = max_payload_chars
        # A logger of the standard class gets its records built directly (see
        # _emit); any other class may have overridden log()/_log(), so it is
        # called the ordinary way.
        self._direct = type(logger) in (logging.Logger, logging.RootLogger)
        self._records = _RecordMaker()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        on_request = on_response = None
        if self.log_payloads and self.logger.isEnabledFor(self.payload_level):

            def on_request(event: RequestMessageEvent) -> None:
                self._payload(scope, "request", event["message"])

            def on_response(event: ResponseMessageEvent) -> None:
                self._payload(scope, "response", event["message"])

        elif self._highest_level is not None and not self.logger.isEnabledFor(self._highest_level):
            # No record of this call could be emitted (the logger is off):
            # observing it would be wasted.
            await self.app(scope, receive, send)
            return

        # CallObserver without ``async with``: the context manager's two
        # coroutines cost more per call than the rest of this method.
        call = CallObserver(scope, receive, send, on_request=on_request, on_response=on_response, reply_sizes=False)
        error: BaseException | None = None
        try:
            await self.app(scope, call.receive, call.send)
        except BaseException as exc:
            error = exc
            raise
        finally:
            try:
                self._access(scope, call.finish(error))
            except Exception:  # never let the access log change the call
                _log.exception("%s: access log failed", scope["path"])

    def _access(self, scope: Scope, outcome: CallOutcome) -> None:
        level = self.level_for_status(outcome.status)
        if not self.logger.isEnabledFor(level):
            return
        principal = scope["state"].get("principal")
        name, code = _NAME_AND_CODE[outcome.status]
        duration_ms = outcome.duration * 1000.0
        peer = peer_string(scope)
        extra = {
            "method": scope["path"],
            "service": scope["service"],
            "status": name,
            "code": code,
            "status_message": outcome.message,
            "duration_ms": round(duration_ms, 3),
            "peer": peer,
            "user_agent": scope["user_agent"],
            "request_messages": outcome.request_messages,
            "response_messages": outcome.response_messages,
            "error": type(outcome.error).__name__ if outcome.error is not None else None,
            "principal": str(principal) if principal is not None else None,
        }
        args = (scope["path"], name, duration_ms, peer)
        if self._direct:
            _emit(self._records, self.logger, level, _ACCESS_FORMAT, args, extra)
        else:
            self.logger.log(level, _ACCESS_FORMAT, *args, extra=extra)

    def _payload(self, scope: Scope, direction: str, message: Any) -> None:
        text = _format_payload(message, self.max_payload_chars)
        args = (scope["path"], direction, text)
        extra = {"method": scope["path"], "direction": direction, "payload": text}
        if self._direct:
            _emit(self._records, self.logger, self.payload_level, _PAYLOAD_FORMAT, args, extra)
        else:
            self.logger.log(self.payload_level, _PAYLOAD_FORMAT, *args, extra=extra)
