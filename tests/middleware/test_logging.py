"""LoggingMiddleware: one structured record per call, level by status, optional payloads."""

from __future__ import annotations

import logging

import pytest
from google.protobuf.wrappers_pb2 import Int32Value, StringValue
from mw_support import Echo, expect_status, serve

from grpcasgi import Middleware, Status
from grpcasgi.middleware import AuthMiddleware, BearerTokenScheme, DeadlineMiddleware, LoggingMiddleware
from grpcasgi.middleware.logging import _format_payload

LOGGER = "test.access"


def records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER]


async def test_one_record_per_call_with_fields(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    mw = [Middleware(LoggingMiddleware, logger=LOGGER)]
    async with serve(mw) as (server, client):
        await client.unary("x")
        await expect_status(client.Fail(StringValue(value="grpc:INVALID_ARGUMENT")), Status.INVALID_ARGUMENT)
        await expect_status(client.Fail(StringValue(value="runtime")), Status.UNKNOWN)
        await expect_status(client.Missing(StringValue()), Status.UNIMPLEMENTED)
        await client.Count(Int32Value(value=2))
    ok, invalid, crashed, missing, count = records(caplog)
    assert ok.levelno == logging.INFO
    assert ok.method == "/test.Echo/Unary" and ok.service == "test.Echo"  # type: ignore[attr-defined]
    assert (ok.status, ok.code, ok.status_message) == ("OK", 0, None)  # type: ignore[attr-defined]
    assert isinstance(ok.duration_ms, float) and ok.duration_ms >= 0  # type: ignore[attr-defined]
    assert ok.peer.startswith("127.0.0.1:")  # type: ignore[attr-defined]
    assert ok.user_agent.startswith("grpc-python-grpcasgi")  # type: ignore[attr-defined]
    assert (ok.request_messages, ok.response_messages, ok.error) == (1, 1, None)  # type: ignore[attr-defined]
    assert "/test.Echo/Unary OK" in ok.getMessage()
    assert invalid.levelno == logging.WARNING and invalid.status == "INVALID_ARGUMENT"  # type: ignore[attr-defined]
    assert invalid.status_message == "failed on purpose"  # type: ignore[attr-defined]
    assert crashed.levelno == logging.ERROR and crashed.status == "UNKNOWN"  # type: ignore[attr-defined]
    assert crashed.error == "RuntimeError" and crashed.exc_info is None  # type: ignore[attr-defined]
    assert missing.levelno == logging.ERROR and missing.status == "UNIMPLEMENTED"  # type: ignore[attr-defined]
    assert count.response_messages == 2  # type: ignore[attr-defined]


async def test_deadline_and_cancellation_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    echo = Echo()
    mw = [Middleware(LoggingMiddleware, logger=LOGGER), Middleware(DeadlineMiddleware, maximum=0.05)]
    async with serve(mw, [echo]) as (_, client):
        # the cancellation passes through the middleware before the runtime
        # sends the status, so the record exists once the client has it
        await expect_status(client.Wait(StringValue(value="x")), Status.DEADLINE_EXCEEDED)
    (record,) = records(caplog)
    assert record.status == "DEADLINE_EXCEEDED" and record.levelno == logging.WARNING  # type: ignore[attr-defined]
    assert record.error == "CancelledError"  # type: ignore[attr-defined]


async def test_level_for_status_and_principal(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    mw = [
        Middleware(LoggingMiddleware, logger=logging.getLogger(LOGGER), level_for_status={Status.OK: logging.DEBUG}),
        Middleware(AuthMiddleware, schemes=[BearerTokenScheme(tokens={"tok": "carol"})]),
    ]
    async with serve(mw) as (_, client):
        await client.unary(metadata={"authorization": "Bearer tok"})
        await expect_status(client.unary(), Status.UNAUTHENTICATED)
    ok, denied = records(caplog)
    assert ok.levelno == logging.DEBUG and ok.principal == "carol"  # type: ignore[attr-defined]
    assert denied.levelno == logging.WARNING and denied.principal is None  # type: ignore[attr-defined]
    assert "tok" not in denied.getMessage()


async def test_level_function_and_disabled_logger(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    mw = [Middleware(LoggingMiddleware, logger=LOGGER, level_for_status=lambda status: logging.DEBUG)]
    async with serve(mw) as (_, client):
        await client.unary()
    assert records(caplog) == []


async def test_payload_records(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    mw = [Middleware(LoggingMiddleware, logger=LOGGER, log_payloads=True, max_payload_chars=25)]
    async with serve(mw) as (_, client):
        await client.unary("payload")
        await client.unary("y" * 100)
        await expect_status(client.Missing(StringValue(value="raw")), Status.UNIMPLEMENTED)
    payloads = [r for r in records(caplog) if hasattr(r, "payload")]
    directions = [(r.direction, r.payload) for r in payloads]  # type: ignore[attr-defined]
    assert directions[0] == ("request", '{value: "payload"}')
    assert directions[1] == ("response", '{value: "echo:payload"}')
    assert directions[2][1].endswith("...") and len(directions[2][1]) == 28
    assert len(directions) == 4  # the unknown method's request is never read
    # raw bytes (unknown methods, when a middleware reads them) print as bytes
    assert _format_payload(b"\x00raw", 100) == repr(b"\x00raw")
    assert _format_payload(b"x" * 50, 10) == repr(b"x" * 11)[:10] + "..."


async def test_no_payload_records_by_default(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    async with serve([Middleware(LoggingMiddleware, logger=LOGGER)]) as (_, client):
        await client.unary("secret-payload")
    assert "secret-payload" not in caplog.text
