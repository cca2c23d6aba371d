"""ValidationMiddleware: invalid request messages end INVALID_ARGUMENT with BadRequest details."""

from __future__ import annotations

import asyncio
from typing import Any, Iterable

import pytest
from google.protobuf.wrappers_pb2 import Int32Value, StringValue
from google.rpc.error_details_pb2 import BadRequest
from mw_support import Echo, expect_status, serve

from grpcasgi import Middleware, Status
from grpcasgi.middleware import FieldViolation, ValidationError, ValidationMiddleware


def non_empty(message: StringValue) -> Iterable[tuple[str, str]]:
    if not message.value:
        yield ("value", "must not be empty")
    if len(message.value) > 10:
        yield ("value", "at most 10 characters")


async def positive(message: Int32Value) -> None:
    await asyncio.sleep(0)  # async validators are awaited
    if message.value < 0:
        raise ValidationError(FieldViolation("value", "must not be negative"))


VALIDATORS = {StringValue: non_empty, Int32Value: positive}


async def test_valid_messages_pass() -> None:
    async with serve([Middleware(ValidationMiddleware, validators=VALIDATORS)]) as (_, client):
        assert await client.unary("ok") == "echo:ok"
        assert (await client.Sum([Int32Value(value=1), Int32Value(value=2)])).value == 3


async def test_invalid_unary_request_never_reaches_handler_code() -> None:
    echo = Echo()
    received: list[Any] = []

    async def hook(stream: Any) -> None:
        received.append(await stream.recv_message())

    echo.hooks["Unary"] = hook
    async with serve([Middleware(ValidationMiddleware, validators=VALIDATORS)], [echo]) as (_, client):
        err = await expect_status(client.unary(""), Status.INVALID_ARGUMENT)
    assert received == []
    assert err.message == "Invalid request: value: must not be empty"
    (detail,) = err.details
    assert isinstance(detail, BadRequest)
    assert [(v.field, v.description) for v in detail.field_violations] == [("value", "must not be empty")]


async def test_several_violations_and_streaming_requests() -> None:
    async with serve([Middleware(ValidationMiddleware, validators=VALIDATORS)]) as (_, client):
        err = await expect_status(client.Sum([Int32Value(value=1), Int32Value(value=-5)]), Status.INVALID_ARGUMENT)
        assert err.message == "Invalid request: value: must not be negative"
        err = await expect_status(client.unary("x" * 11), Status.INVALID_ARGUMENT)
        assert len(err.details[0].field_violations) == 1


async def test_violation_shapes() -> None:
    def many(message: StringValue) -> list[Any]:
        if message.value != "bad":
            return []
        return [
            FieldViolation("a", "one"),
            ("b", "two"),
            BadRequest.FieldViolation(field="c", description="three"),
        ]

    async with serve([Middleware(ValidationMiddleware, validators={StringValue: many})]) as (_, client):
        assert await client.unary("good") == "echo:good"
        err = await expect_status(client.unary("bad"), Status.INVALID_ARGUMENT)
    assert [(v.field, v.description) for v in err.details[0].field_violations] == [
        ("a", "one"),
        ("b", "two"),
        ("c", "three"),
    ]


async def test_subclass_lookup_and_unvalidated_types() -> None:
    class Base:
        pass

    class Child(Base):
        pass

    def base_validator(message: Any) -> None:
        return None

    mw = ValidationMiddleware(None, validators={Base: base_validator})
    assert mw.validator_for(Child) is base_validator
    assert mw.validator_for(bytes) is None
    assert await mw.validate(b"raw") == ()
    with pytest.raises(TypeError):
        ValidationMiddleware(None, validators={"StringValue": non_empty})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        ValidationMiddleware(None, validators={StringValue: "nope"})  # type: ignore[dict-item]
