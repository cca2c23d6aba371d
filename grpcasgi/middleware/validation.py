"""Validate request messages as they arrive, before the handler gets them.

Messages reach middleware already decoded (``docs/spec.md``), so validation
costs no second decode: ``ValidationMiddleware`` wraps ``receive`` and runs
the validator registered for each message's type. Violations end the call
INVALID_ARGUMENT with a ``google.rpc.BadRequest`` detail listing them (when
googleapis-common-protos is installed) -- the handler's ``recv_message()``
raises that error instead of returning the message, so an invalid message is
never seen by handler code. For streaming requests each message is checked
as it arrives; the ones before it were valid and were already handled.

A validator is ``fn(message)`` (sync or async) that returns None or an
empty iterable when the message is valid, or an iterable of violations,
or raises :class:`ValidationError`. A violation is a :class:`FieldViolation`,
a ``(field, description)`` pair or any object with ``field`` and
``description`` attributes (``google.rpc.BadRequest.FieldViolation``).
Descriptions are sent to the client: describe the rule, not server state.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable, Mapping, Union

from ..exceptions import GRPCError
from ..protocol.status import Status
from ..types import Receive, ReceiveEvent, Scope, Send
from .base import peer_string

__all__ = ["ValidationMiddleware", "ValidationError", "FieldViolation", "bad_request"]

log = logging.getLogger("grpcasgi.middleware.validation")


@dataclass(frozen=True)
class FieldViolation:
    #: Path to the field, e.g. ``"user.email"`` or ``"items[2].quantity"``.
    field: str
    description: str


ViolationLike = Union[FieldViolation, "tuple[str, str]", Any]


def _violation(value: ViolationLike) -> FieldViolation:
    if isinstance(value, FieldViolation):
        return value
    if isinstance(value, tuple) and len(value) == 2:
        return FieldViolation(str(value[0]), str(value[1]))
    field = getattr(value, "field", None)
    description = getattr(value, "description", None)
    if field is None or description is None:
        raise TypeError(f"not a field violation: {value!r}")
    return FieldViolation(str(field), str(description))


class ValidationError(Exception):
    """Raised by a validator: ``ValidationError(("name", "must not be empty"), ...)``."""

    def __init__(self, *violations: ViolationLike) -> None:
        self.violations = tuple(_violation(v) for v in violations)
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in self.violations))


Validator = Callable[[Any], Union[Iterable[ViolationLike], None, Awaitable[Union[Iterable[ViolationLike], None]]]]


def bad_request(violations: Iterable[FieldViolation]) -> list[Any] | None:
    """``[google.rpc.BadRequest(...)]`` for the status details, if googleapis-common-protos is installed."""
    try:
        from google.rpc.error_details_pb2 import BadRequest
    except ImportError:
        return None
    return [
        BadRequest(
            field_violations=[BadRequest.FieldViolation(field=v.field, description=v.description) for v in violations]
        )
    ]


class ValidationMiddleware:
    """Run ``validators[type(message)]`` (subclasses match too) on every request message."""

    def __init__(self, app: Any, *, validators: Mapping[type, Validator]) -> None:
        for message_type, validator in validators.items():
            if not isinstance(message_type, type):
                raise TypeError(f"validators keys must be message classes, got {message_type!r}")
            if not callable(validator):
                raise TypeError(f"validator for {message_type.__name__} is not callable")
        self.app = app
        self.validators = dict(validators)
        self._cache: dict[type, Validator | None] = {}

    def validator_for(self, message_type: type) -> Validator | None:
        try:
            return self._cache[message_type]
        except KeyError:
            pass
        found = None
        for cls in message_type.__mro__:
            found = self.validators.get(cls)
            if found is not None:
                break
        self._cache[message_type] = found
        return found

    async def validate(self, message: Any) -> tuple[FieldViolation, ...]:
        validator = self.validator_for(type(message))
        if validator is None:
            return ()
        try:
            result = validator(message)
            if inspect.isawaitable(result):
                result = await result
        except ValidationError as exc:
            return exc.violations
        if result is None:
            return ()
        return tuple(_violation(v) for v in result)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def validating_receive() -> ReceiveEvent:
            event = await receive()
            if event["type"] == "grpc.request.message":
                violations = await self.validate(event["message"])
                if violations:
                    text = "; ".join(f"{v.field}: {v.description}" for v in violations)
                    log.info("%s from %s: invalid request: %s", scope["path"], peer_string(scope), text)
                    raise GRPCError(Status.INVALID_ARGUMENT, f"Invalid request: {text}", bad_request(violations))
            return event

        await self.app(scope, validating_receive, send)
