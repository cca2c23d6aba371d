"""Malformed requests are stream errors: the connection and its other calls live on.

RFC 9113 section 8.1.1 makes a malformed request a stream error of type
PROTOCOL_ERROR. ``h2`` raised a connection error for it, so one bad header
killed every call on the connection; the server now resets just that stream.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hostile_support import PROTOCOL_ERROR, SV, Bystander, peer, request_headers

from grpcasgi.client import Channel, UnaryUnaryMethod
from grpcasgi.protocol.metadata import InvalidMetadata

MALFORMED = {
    "leading whitespace": [(b"x-meta", b" value")],
    "trailing whitespace": [(b"x-meta", b"value ")],
    "uppercase name": [(b"X-Meta", b"value")],
    "connection header": [(b"connection", b"keep-alive")],
    "te other than trailers": [(b"te", b"gzip")],
    "second :path": [(b":path", b"/h.Echo/Unary")],
}


@pytest.mark.parametrize("extra", MALFORMED.values(), ids=list(MALFORMED))
async def test_malformed_request_resets_only_its_stream(
    serve: Any, extra: list[tuple[bytes, bytes]], caplog: pytest.LogCaptureFixture
) -> None:
    server, echo = await serve()
    caplog.set_level(logging.WARNING, logger="grpcasgi.server")
    async with Bystander(server.port):
        async with peer(server.port) as raw:
            raw.handshake()
            hang = raw.call(path="/h.Echo/Hang")
            headers = request_headers()
            if extra[0][0] == b":path":
                headers.insert(1, extra[0])
            else:
                headers += extra
            bad = raw.open_stream(headers, body=b"\x00\x00\x00\x00\x00")
            await raw.read_until(lambda: bool(raw.resets(bad)))
            assert raw.resets(bad)[0].error_code == PROTOCOL_ERROR
            # Same connection: the running call is untouched, a new call works.
            ok = raw.call("after")
            await raw.read_until(lambda: any("END_STREAM" in f.flags for f in raw.headers_of(ok)))
            assert not raw.goaways() and echo.running == 1
            raw.reset(hang)
    assert any("malformed request headers on stream" in r.getMessage() for r in caplog.records)


async def test_our_client_refuses_surrounding_whitespace_before_sending(serve: Any) -> None:
    server, echo = await serve()
    async with Channel("127.0.0.1", server.port) as channel:
        method = UnaryUnaryMethod(channel, "/h.Echo/Unary", SV, SV)
        with pytest.raises(InvalidMetadata, match="start or end with a space"):
            await method(SV(value="x"), metadata={"x-meta": " padded "})
        assert (await method(SV(value="y"), metadata={"x-meta": "in side"})).value == "y"
    assert echo.entered == 1
