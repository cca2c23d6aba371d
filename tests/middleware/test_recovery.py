"""ErrorMappingMiddleware: exception types to statuses, nothing internal leaked."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from google.protobuf.wrappers_pb2 import StringValue
from mw_support import Echo, expect_status, serve

from grpcasgi import GRPCError, Middleware, Status
from grpcasgi.middleware import DEFAULT_MAPPING, ErrorMappingMiddleware


def fail(kind: str) -> StringValue:
    return StringValue(value=kind)


async def test_mapping_is_mro_aware_and_messages_generic(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="grpcasgi")
    mapping = {LookupError: Status.NOT_FOUND, ValueError: Status.INVALID_ARGUMENT}
    async with serve([Middleware(ErrorMappingMiddleware, mapping=mapping)]) as (_, client):
        err = await expect_status(client.Fail(fail("key")), Status.NOT_FOUND)  # KeyError -> LookupError
        assert err.message == "Not found"
        err = await expect_status(client.Fail(fail("lookup")), Status.NOT_FOUND)  # IndexError
        err = await expect_status(client.Fail(fail("value")), Status.INVALID_ARGUMENT)
        assert err.message == "Invalid argument"
        err = await expect_status(client.Fail(fail("runtime")), Status.UNKNOWN)  # default
        assert err.message == "Internal Server Error"
        # GRPCError raised by the handler keeps its own status and message
        err = await expect_status(client.Fail(fail("grpc:ABORTED")), Status.ABORTED)
        assert err.message == "failed on purpose"
    assert "secret" not in "".join(r.getMessage() for r in caplog.records if r.levelno < logging.ERROR)
    unknown = [r for r in caplog.records if r.name == "grpcasgi.middleware.errors" and r.levelno == logging.ERROR]
    assert len(unknown) == 1 and unknown[0].exc_info is not None  # traceback logged server-side only


async def test_message_option_and_callable_values() -> None:
    def conflict(exc: BaseException) -> GRPCError:
        return GRPCError(Status.ALREADY_EXISTS, f"duplicate {type(exc).__name__}")

    mw = [
        Middleware(
            ErrorMappingMiddleware,
            mapping={KeyError: conflict, ValueError: Status.OUT_OF_RANGE},
            message=lambda exc, status: f"{status.name.lower()} happened",
            default=Status.INTERNAL,
        )
    ]
    async with serve(mw) as (_, client):
        err = await expect_status(client.Fail(fail("key")), Status.ALREADY_EXISTS)
        assert err.message == "duplicate KeyError"
        err = await expect_status(client.Fail(fail("value")), Status.OUT_OF_RANGE)
        assert err.message == "out_of_range happened"
        err = await expect_status(client.Fail(fail("runtime")), Status.INTERNAL)
        assert err.message == "internal happened"
    async with serve([Middleware(ErrorMappingMiddleware, message="Sorry")]) as (_, client):
        err = await expect_status(client.Fail(fail("runtime")), Status.UNKNOWN)
        assert err.message == "Sorry"


async def test_default_none_lets_unmapped_exceptions_through(caplog: pytest.LogCaptureFixture) -> None:
    async with serve([Middleware(ErrorMappingMiddleware, mapping={KeyError: Status.NOT_FOUND}, default=None)]) as (
        _,
        client,
    ):
        err = await expect_status(client.Fail(fail("value")), Status.UNKNOWN)
        assert err.message == "Internal Server Error"
    assert "Application error while handling /test.Echo/Fail" in caplog.text  # the runtime's log


async def test_default_mapping() -> None:
    assert DEFAULT_MAPPING[NotImplementedError] is Status.UNIMPLEMENTED
    echo = Echo()

    async def hook(stream: Any) -> None:
        raise NotImplementedError("internal plan")

    echo.hooks["Unary"] = hook
    async with serve([Middleware(ErrorMappingMiddleware)], [echo]) as (_, client):
        err = await expect_status(client.unary(), Status.UNIMPLEMENTED)
        assert err.message == "Not implemented"


async def test_exception_after_the_call_ended_is_not_remapped(caplog: pytest.LogCaptureFixture) -> None:
    echo = Echo()

    async def hook(stream: Any) -> None:
        await stream.recv_message()
        await stream.send_message(StringValue(value="done"))
        await stream.send_trailing_metadata()
        raise KeyError("late")

    echo.hooks["Unary"] = hook
    async with serve([Middleware(ErrorMappingMiddleware, mapping={KeyError: Status.NOT_FOUND})], [echo]) as (
        _,
        client,
    ):
        assert await client.unary() == "done"
    assert "Application error while handling /test.Echo/Unary" in caplog.text  # left to the runtime


def test_options_are_validated() -> None:
    with pytest.raises(TypeError):
        ErrorMappingMiddleware(None, mapping={"KeyError": Status.NOT_FOUND})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        ErrorMappingMiddleware(None, mapping={GRPCError: Status.NOT_FOUND})
    with pytest.raises(TypeError):
        ErrorMappingMiddleware(None, mapping={KeyError: 5})  # type: ignore[dict-item]
