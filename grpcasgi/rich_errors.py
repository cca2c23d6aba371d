"""Rich error details: the ``google.rpc`` error model on top of :class:`~grpcasgi.GRPCError`.

A status code and a message say *that* a call failed; the standard detail
messages of ``google/rpc/error_details.proto`` say *why* in a form a program
can act on: which request fields were wrong (``BadRequest``), when to retry
(``RetryInfo``), which quota ran out (``QuotaFailure``)... They travel in the
``grpc-status-details-bin`` trailer as a serialized ``google.rpc.Status``, the
format grpcio (``grpcio-status``), grpc-go, grpc-java and Google APIs use, so
either side may be another gRPC implementation.

In a handler (or middleware), raise one of the helpers; each returns a
:class:`GRPCError` with a fitting default status::

    raise bad_request({"name": "must not be empty"})
    raise quota_failure({"project:42": "daily limit reached"}, details=[retry_info(3600)])

In a client, read the details back by type::

    except GRPCError as err:
        for violation in details_of(err, BadRequest)[0].field_violations: ...
        delay = retry_delay(err)

``details=`` of every helper (and ``*details`` of :func:`rich_error`) takes
protobuf messages and other helpers' errors alike; an error contributes its
details and its status is ignored. Needs ``googleapis-common-protos`` (the
``grpcasgi[rich]`` extra), which also makes servers and channels encode and
decode the details (``codec.ProtoStatusDetailsCodec``).

:func:`debug_info` puts stack frames in front of the client: send it only to
trusted callers.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence, TypeVar

from google.protobuf.any_pb2 import Any as AnyProto
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.rpc.error_details_pb2 import (
    BadRequest,
    DebugInfo,
    ErrorInfo,
    Help,
    LocalizedMessage,
    PreconditionFailure,
    QuotaFailure,
    RequestInfo,
    ResourceInfo,
    RetryInfo,
)

from .exceptions import GRPCError
from .protocol.status import Status

__all__ = [
    "rich_error",
    "bad_request",
    "precondition_failure",
    "quota_failure",
    "retry_info",
    "resource_info",
    "error_info",
    "debug_info",
    "help_links",
    "localized_message",
    "request_info",
    "details_of",
    "detail_of",
    "retry_delay",
    "BadRequest",
    "DebugInfo",
    "ErrorInfo",
    "Help",
    "LocalizedMessage",
    "PreconditionFailure",
    "QuotaFailure",
    "RequestInfo",
    "ResourceInfo",
    "RetryInfo",
]

_M = TypeVar("_M", bound=Message)

#: What ``details=`` accepts: detail messages, or errors whose details are taken.
DetailLike = Message | GRPCError


def _flatten(details: Iterable[DetailLike]) -> list[Message]:
    out: list[Message] = []
    for detail in details:
        if isinstance(detail, GRPCError):
            out.extend(detail.details or ())
        elif isinstance(detail, Message):
            out.append(detail)
        else:
            raise TypeError(f"a rich error detail must be a protobuf message or a GRPCError, got {detail!r}")
    return out


def rich_error(status: Status, message: str | None = None, *details: DetailLike) -> GRPCError:
    """A :class:`GRPCError` carrying ``details`` (``google.rpc`` messages, or errors to take details from)."""
    if status is Status.OK:
        raise ValueError("rich errors need a non-OK status (details are never sent with OK)")
    return GRPCError(status, message, _flatten(details))


def _pairs(items: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return list(items.items()) if isinstance(items, Mapping) else [tuple(pair) for pair in items]  # type: ignore[misc]


def bad_request(
    field_violations: Mapping[str, str] | Iterable[tuple[str, str]] | Iterable[BadRequest.FieldViolation],
    message: str | None = None,
    *,
    status: Status = Status.INVALID_ARGUMENT,
    details: Sequence[DetailLike] = (),
) -> GRPCError:
    """Invalid request fields: ``{"field.path": "what is wrong"}`` (or ``FieldViolation`` messages).

    The default message lists the violations, for clients that only print it.
    """
    violations: list[BadRequest.FieldViolation] = []
    items = list(field_violations.items()) if isinstance(field_violations, Mapping) else list(field_violations)
    for item in items:
        if isinstance(item, BadRequest.FieldViolation):
            violations.append(item)
        else:
            field, description = item
            violations.append(BadRequest.FieldViolation(field=field, description=description))
    if message is None:
        message = "invalid request: " + "; ".join(f"{v.field}: {v.description}" for v in violations)
    return rich_error(status, message, BadRequest(field_violations=violations), *details)


def precondition_failure(
    violations: Iterable[tuple[str, str, str]] | Iterable[PreconditionFailure.Violation],
    message: str | None = None,
    *,
    status: Status = Status.FAILED_PRECONDITION,
    details: Sequence[DetailLike] = (),
) -> GRPCError:
    """Unmet preconditions as ``(type, subject, description)``, e.g. ``("TOS", "user:42", "terms not accepted")``."""
    items: list[PreconditionFailure.Violation] = []
    for item in violations:
        if isinstance(item, PreconditionFailure.Violation):
            items.append(item)
        else:
            kind, subject, description = item
            items.append(PreconditionFailure.Violation(type=kind, subject=subject, description=description))
    if message is None:
        message = "precondition failed: " + "; ".join(f"{v.type} {v.subject}: {v.description}" for v in items)
    return rich_error(status, message, PreconditionFailure(violations=items), *details)


def quota_failure(
    violations: Mapping[str, str] | Iterable[tuple[str, str]] | Iterable[QuotaFailure.Violation],
    message: str | None = None,
    *,
    status: Status = Status.RESOURCE_EXHAUSTED,
    details: Sequence[DetailLike] = (),
) -> GRPCError:
    """Exhausted quotas: ``{"subject": "description"}``, e.g. ``{"project:42": "daily limit reached"}``."""
    items: list[QuotaFailure.Violation] = []
    raw = list(violations.items()) if isinstance(violations, Mapping) else list(violations)
    for item in raw:
        if isinstance(item, QuotaFailure.Violation):
            items.append(item)
        else:
            subject, description = item
            items.append(QuotaFailure.Violation(subject=subject, description=description))
    if message is None:
        message = "quota exceeded: " + "; ".join(f"{v.subject}: {v.description}" for v in items)
    return rich_error(status, message, QuotaFailure(violations=items), *details)


def _duration(seconds: float) -> Duration:
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a retry delay must be a finite number of seconds >= 0, got {seconds!r}")
    duration = Duration()
    duration.FromNanoseconds(math.ceil(seconds * 1e9))
    return duration


def retry_info(
    delay: float,
    message: str | None = None,
    *,
    status: Status = Status.UNAVAILABLE,
    details: Sequence[DetailLike] = (),
) -> GRPCError:
    """Retry after ``delay`` seconds (clients read it with :func:`retry_delay`)."""
    if message is None:
        message = f"temporarily unavailable; retry in {delay:g}s"
    return rich_error(status, message, RetryInfo(retry_delay=_duration(delay)), *details)


def resource_info(
    resource_type: str,
    resource_name: str,
    message: str | None = None,
    *,
    owner: str = "",
    description: str = "",
    status: Status = Status.NOT_FOUND,
    details: Sequence[DetailLike] = (),
) -> GRPCError:
    """The resource the call was about, e.g. ``resource_info("book", "shelves/1/books/2")`` (NOT_FOUND)."""
    if message is None:
        message = f"{resource_type} {resource_name!r}: {description or status.name.lower().replace('_', ' ')}"
    detail = ResourceInfo(
        resource_type=resource_type, resource_name=resource_name, owner=owner, description=description
    )
    return rich_error(status, message, detail, *details)


def error_info(
    reason: str,
    domain: str,
    metadata: Mapping[str, str] | None = None,
    message: str | None = None,
    *,
    status: Status = Status.UNKNOWN,
    details: Sequence[DetailLike] = (),
) -> GRPCError:
    """A machine-readable cause: ``reason`` (UPPER_SNAKE_CASE) unique within ``domain``, plus context.

    Usually given an explicit ``status=`` (the default UNKNOWN says nothing),
    or passed in another helper's ``details=``.
    """
    detail = ErrorInfo(reason=reason, domain=domain, metadata=dict(metadata or {}))
    return rich_error(status, message if message is not None else reason, detail, *details)


def debug_info(
    stack_entries: Sequence[str] = (),
    detail: str = "",
    message: str | None = None,
    *,
    status: Status = Status.INTERNAL,
    details: Sequence[DetailLike] = (),
) -> GRPCError:
    """Debugging context (stack frames, a detail string) — for trusted clients only."""
    return rich_error(status, message or detail or "internal error", DebugInfo(stack_entries=list(stack_entries), detail=detail), *details)


def help_links(
    links: Mapping[str, str] | Iterable[tuple[str, str]],
    message: str | None = None,
    *,
    status: Status = Status.UNKNOWN,
    details: Sequence[DetailLike] = (),
) -> GRPCError:
    """Documentation links as ``{"description": "url"}`` (usually in another helper's ``details=``)."""
    detail = Help(links=[Help.Link(description=d, url=u) for d, u in _pairs(links)])
    return rich_error(status, message, detail, *details)


def localized_message(
    locale: str,
    text: str,
    *,
    status: Status = Status.UNKNOWN,
    details: Sequence[DetailLike] = (),
) -> GRPCError:
    """A message for end users in ``locale`` (BCP-47, e.g. ``"fr-CH"``), beside the developer message."""
    return rich_error(status, text, LocalizedMessage(locale=locale, message=text), *details)


def request_info(
    request_id: str,
    serving_data: str = "",
    message: str | None = None,
    *,
    status: Status = Status.UNKNOWN,
    details: Sequence[DetailLike] = (),
) -> GRPCError:
    """The request's id (and opaque serving data) for bug reports and support."""
    detail = RequestInfo(request_id=request_id, serving_data=serving_data)
    return rich_error(status, message, detail, *details)


# -- reading details (clients) ------------------------------------------------------


def details_of(error: GRPCError, detail_type: type[_M]) -> list[_M]:
    """The details of ``error`` of type ``detail_type``, in order (empty if none).

    Details of types the client's descriptor pool did not know arrive as
    ``google.protobuf.Any``; those matching ``detail_type`` are unpacked here.
    """
    out: list[_M] = []
    for detail in error.details or ():
        if isinstance(detail, detail_type):
            out.append(detail)
        elif isinstance(detail, AnyProto) and detail.TypeName() == detail_type.DESCRIPTOR.full_name:
            unpacked = detail_type()
            detail.Unpack(unpacked)
            out.append(unpacked)
    return out


def detail_of(error: GRPCError, detail_type: type[_M]) -> _M | None:
    """The first detail of type ``detail_type``, or None."""
    found = details_of(error, detail_type)
    return found[0] if found else None


def retry_delay(error: GRPCError) -> float | None:
    """Seconds the server asked to wait before retrying (``RetryInfo``), or None."""
    info = detail_of(error, RetryInfo)
    if info is None or not info.HasField("retry_delay"):
        return None
    return float(info.retry_delay.ToNanoseconds()) / 1e9
