"""Malformed requests on raw HTTP/2 connections (the ``h2`` library on a socket).

For each: the peer gets a clear status, the server logs a line saying why,
nothing crashes, and the next call on the same connection still succeeds.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from core_helpers import (
    BAD_MESSAGE_CASES,
    BV,
    SS,
    SV,
    UU,
    RawH2,
    Service,
    bad_header_cases,
    echo_service,
    frame,
    grpc_request_headers,
)
from grpcasgi.protocol.status import Status

OK_BODY = frame(SV(value="still fine").SerializeToString())


async def _assert_connection_still_serves(raw: RawH2) -> None:
    sid = raw.request(grpc_request_headers("/core.Echo/Unary"), OK_BODY)
    resp = await raw.response(sid)
    assert resp.grpc_status == 0, resp
    assert SV.FromString(resp.data[5:]).value == "still fine"


def _logged(caplog: pytest.LogCaptureFixture, *needles: str) -> bool:
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("grpcasgi"))
    return all(n.lower() in text.lower() for n in needles)


# (id, header overrides, body, expected grpc-status, text in grpc-message, text in the log)
GRPC_STATUS_CASES = [
    *BAD_MESSAGE_CASES,
    ("prefix-over-limit", {}, b"\x00\x7f\xff\xff\xff", Status.RESOURCE_EXHAUSTED, "larger than max", "larger than max"),
    *bad_header_cases(OK_BODY),
]


@pytest.mark.parametrize(
    "headers, body, status, message, logged",
    [c[1:] for c in GRPC_STATUS_CASES],
    ids=[c[0] for c in GRPC_STATUS_CASES],
)
async def test_bad_request_gets_grpc_status(
    server: Any,
    raw_h2: Any,
    caplog: pytest.LogCaptureFixture,
    headers: dict[str, str],
    body: bytes,
    status: Status,
    message: str,
    logged: str,
) -> None:
    raw = await raw_h2()
    with caplog.at_level(logging.INFO, logger="grpcasgi"):
        encoded = {k: v.encode("latin-1") for k, v in headers.items()}
        sid = raw.request(grpc_request_headers("/core.Echo/Unary", **encoded), body)
        resp = await raw.response(sid)
    assert resp.http_status == 200
    assert resp.grpc_status == status.value, resp
    assert message.lower() in resp.grpc_message.lower(), resp.grpc_message
    assert _logged(caplog, logged), [r.getMessage() for r in caplog.records]
    await _assert_connection_still_serves(raw)


# (id, header overrides, expected HTTP status, expected grpc-status, log text)
HTTP_STATUS_CASES = [
    ("get", {"method": "GET"}, 405, Status.INTERNAL, "POST"),
    ("put", {"method": "PUT"}, 405, Status.INTERNAL, "POST"),
    ("text-plain", {"content_type": "text/plain"}, 415, Status.UNKNOWN, "content-type"),
    ("grpc-web", {"content_type": "application/grpc-web"}, 415, Status.UNKNOWN, "content-type"),
    ("unknown-codec", {"content_type": "application/grpc+thrift"}, 415, Status.UNKNOWN, "content-type"),
    ("no-content-type", {"content_type": None}, 415, Status.UNKNOWN, "content-type"),
    ("missing-te", {"te": None}, 400, Status.INTERNAL, "te: trailers"),
]


@pytest.mark.parametrize(
    "headers, http_status, status, text", [c[1:] for c in HTTP_STATUS_CASES], ids=[c[0] for c in HTTP_STATUS_CASES]
)
async def test_non_grpc_request_gets_http_error(
    server: Any, raw_h2: Any, caplog: pytest.LogCaptureFixture, headers: dict[str, Any], http_status: int, status: Status, text: str
) -> None:
    raw = await raw_h2()
    with caplog.at_level(logging.INFO, logger="grpcasgi"):
        sid = raw.request(grpc_request_headers("/core.Echo/Unary", **headers), OK_BODY)
        resp = await raw.response(sid)
    assert resp.http_status == http_status
    assert resp.grpc_status == status.value
    assert _logged(caplog, text), [r.getMessage() for r in caplog.records]
    await _assert_connection_still_serves(raw)


async def test_bad_path(server: Any, raw_h2: Any) -> None:
    raw = await raw_h2()
    for path in ["/", "/core.Echo", "/core.Echo/Unary/extra", "core.Echo/Unary"]:
        sid = raw.request(grpc_request_headers(path), OK_BODY)
        resp = await raw.response(sid)
        assert resp.grpc_status == Status.UNIMPLEMENTED.value, path
    await _assert_connection_still_serves(raw)


async def test_client_reset_mid_request(server: Any, raw_h2: Any) -> None:
    """A client resetting its stream halfway through a message leaves no trace but the next call works."""
    raw = await raw_h2()
    sid = raw.request(grpc_request_headers("/core.Echo/Unary"), b"\x00\x00\x00\x10\x00abc", end=False)
    raw.conn.reset_stream(sid)
    raw.flush()
    await _assert_connection_still_serves(raw)


async def test_trailing_garbage_after_unary_request(server: Any, raw_h2: Any) -> None:
    """Two messages for a unary method: the handler reads one; the call still ends OK."""
    raw = await raw_h2()
    sid = raw.request(grpc_request_headers("/core.Echo/Unary"), OK_BODY + OK_BODY)
    resp = await raw.response(sid)
    assert resp.grpc_status == 0
    await _assert_connection_still_serves(raw)


async def test_garbage_instead_of_http2(server: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A peer that does not speak HTTP/2 is disconnected with a log line; the server keeps serving."""
    import asyncio

    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    with caplog.at_level(logging.INFO, logger="grpcasgi"):
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(reader.read(), 5)  # the server closes the connection
    writer.close()
    await writer.wait_closed()
    assert _logged(caplog, "protocol error")
    raw = await RawH2.connect(server.port)
    try:
        await _assert_connection_still_serves(raw)
    finally:
        await raw.close()


async def test_bad_input_on_streaming_call_keeps_earlier_replies(
    start_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A bidi call whose second message is malformed: first reply delivered, then INTERNAL."""

    async def handler(stream: Any) -> None:
        async for message in stream:
            await stream.send_message(message)

    server = await start_server([Service("core.T", M=(handler, SS, BV, BV)), echo_service()])
    raw = await RawH2.connect(server.port)
    try:
        body = frame(BV(value=b"one").SerializeToString()) + b"\x00\x00\x00\x00\x09abc"
        with caplog.at_level(logging.INFO, logger="grpcasgi"):
            sid = raw.request(grpc_request_headers("/core.T/M"), body)
            resp = await raw.response(sid)
        assert resp.grpc_status == Status.INTERNAL.value
        assert BV.FromString(resp.data[5:]).value == b"one"
        assert _logged(caplog, "inside a message")
        await _assert_connection_still_serves(raw)
    finally:
        await raw.close()


async def test_unimplemented_method_with_large_body(server: Any, raw_h2: Any) -> None:
    """An unknown method answers at once and discards the body without buffering it."""
    raw = await raw_h2()
    sid = raw.request(grpc_request_headers("/core.Nope/M"), b"\x00\x00\x10\x00\x00", end=False)
    for _ in range(8):
        if raw.conn.local_flow_control_window(sid) < 16384:
            break
        raw.send_data(sid, b"z" * 16384)
    resp = await raw.response(sid)
    assert resp.grpc_status == Status.UNIMPLEMENTED.value
    await _assert_connection_still_serves(raw)


async def test_unary_method_without_request_message(server: Any, raw_h2: Any) -> None:
    """A unary call whose request stream ends with no message: the handler gets None; no crash."""
    raw = await raw_h2()
    sid = raw.request(grpc_request_headers("/core.Echo/Unary"), b"")
    resp = await raw.response(sid)
    # The echo handler dereferences None → UNKNOWN, never a hang or a dropped connection.
    assert resp.grpc_status == Status.UNKNOWN.value
    await _assert_connection_still_serves(raw)
