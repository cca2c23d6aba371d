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


class _CustomLogger(logging.Logger):
    """Not the standard class: LoggingMiddleware then calls ``Logger.log`` itself."""


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


#: Attributes that differ between two records of the same call by nature.
_PER_RECORD = {"name", "created", "msecs", "relativeCreated", "lineno", "duration_ms", "args"}
#: What formatting adds to a record (caplog's handler formats the records it keeps).
_FORMATTED = {"message", "asctime"}


@pytest.mark.parametrize("payloads", [False, True], ids=["access", "payloads"])
async def test_records_are_those_logger_log_builds(caplog: pytest.LogCaptureFixture, payloads: bool) -> None:
    # Standard loggers get their records built without Logger.log's stack walk;
    # they must carry the same attributes, source file and function as the
    # records Logger.log builds (which a custom logger class still gets).
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    keep = _Keep()
    custom = _CustomLogger(LOGGER + ".custom", logging.DEBUG)
    custom.addHandler(keep)
    mw = [
        Middleware(LoggingMiddleware, logger=LOGGER, log_payloads=payloads),
        Middleware(LoggingMiddleware, logger=custom, log_payloads=payloads),
    ]
    async with serve(mw) as (_, client):
        await client.unary("x")
    direct, slow = records(caplog), keep.records
    assert len(direct) == len(slow) == (3 if payloads else 1)
    for fast_record, log_record in zip(direct, slow):
        fast = {k: v for k, v in vars(fast_record).items() if k not in _FORMATTED}
        reference = {k: v for k, v in vars(log_record).items() if k not in _FORMATTED}
        assert fast.keys() == reference.keys()
        assert {k: v for k, v in fast.items() if k not in _PER_RECORD} == {
            k: v for k, v in reference.items() if k not in _PER_RECORD
        }
        assert fast_record.funcName in ("_access", "_payload")
        assert fast_record.pathname.endswith("logging.py") and "middleware" in fast_record.pathname
        with open(fast_record.pathname) as source:
            lines = source.read().splitlines()
        assert "_emit(" in lines[fast_record.lineno - 1]
        assert "self.logger.log(" in lines[log_record.lineno - 1]


async def test_source_location_off_as_logging_srcfile_none(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logging, "_srcfile", None)  # the logging docs' optimisation
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with serve([Middleware(LoggingMiddleware, logger=LOGGER)]) as (_, client):
        await client.unary("x")
    (record,) = records(caplog)
    assert (record.pathname, record.lineno, record.funcName) == ("(unknown file)", 0, "(unknown function)")


async def test_logger_switched_off_and_on(caplog: pytest.LogCaptureFixture) -> None:
    # With the logger off for every level a record could have, calls are not
    # observed at all; the check is made per call, so switching it back on works.
    logger = logging.getLogger(LOGGER)
    mw = [
        Middleware(LoggingMiddleware, logger=LOGGER),
        Middleware(LoggingMiddleware, logger=LOGGER, level_for_status={Status.OK: logging.CRITICAL}),
    ]
    async with serve(mw) as (_, client):
        caplog.set_level(logging.CRITICAL, logger=LOGGER)
        await client.unary()
        assert [r.levelno for r in records(caplog)] == [logging.CRITICAL]  # only the mapping's OK level
        logger.setLevel(logging.CRITICAL + 1)
        await client.unary()
        await expect_status(client.Fail(StringValue(value="runtime")), Status.UNKNOWN)
        assert len(records(caplog)) == 1
        caplog.set_level(logging.INFO, logger=LOGGER)
        await client.unary()
    # the inner layer ends first
    assert [r.levelno for r in records(caplog)] == [logging.CRITICAL, logging.CRITICAL, logging.INFO]


async def test_a_failing_access_log_does_not_change_the_call(caplog: pytest.LogCaptureFixture) -> None:
    def broken(status: Status) -> int:
        raise RuntimeError("level function bug")

    async with serve([Middleware(LoggingMiddleware, logger=LOGGER, level_for_status=broken)]) as (_, client):
        assert await client.unary() == "echo:hi"
    assert "/test.Echo/Unary: access log failed" in caplog.text


def test_access_records_are_the_records_logging_would_make() -> None:
    """The record maker copies a prototype: every attribute must still be what LogRecord sets."""
    import threading
    import time

    from grpcasgi.middleware.logging import _RecordMaker

    logger = logging.getLogger(LOGGER)
    maker = _RecordMaker()
    args = ("/a.B/C", "OK", 1.5, "127.0.0.1:1")
    before = time.time()
    for _ in range(2):  # the prototype's first use and a copy of it
        fast = maker.make(logger, logging.INFO, __file__, 7, "here", "%s %s %.1fms peer=%s", args, {"peer": "p"})
        slow = logger.makeRecord(logger.name, logging.INFO, __file__, 7, "%s %s %.1fms peer=%s", args, None, "here")
        slow.__dict__.update(peer="p")
        assert type(fast) is logging.LogRecord
        assert set(vars(fast)) == set(vars(slow))
        moving = {"created", "msecs", "relativeCreated"}
        assert {k: v for k, v in vars(fast).items() if k not in moving} == {
            k: v for k, v in vars(slow).items() if k not in moving
        }
        assert before <= fast.created <= slow.created
        assert 0 <= fast.msecs < 1000 and fast.relativeCreated <= slow.relativeCreated
        assert fast.getMessage() == slow.getMessage() == "/a.B/C OK 1.5ms peer=127.0.0.1:1"
        assert fast.thread == threading.get_ident()


def test_a_custom_record_factory_is_honoured(caplog: pytest.LogCaptureFixture) -> None:
    from grpcasgi.middleware.logging import _RecordMaker

    class Tagged(logging.LogRecord):
        tag = "custom"

    default = logging.getLogRecordFactory()
    logging.setLogRecordFactory(Tagged)
    try:
        record = _RecordMaker().make(logging.getLogger(LOGGER), logging.INFO, __file__, 1, "f", "m", (), {"k": 1})
    finally:
        logging.setLogRecordFactory(default)
    assert type(record) is Tagged and record.k == 1  # type: ignore[attr-defined]
