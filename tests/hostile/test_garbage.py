"""Invalid frames, bad prefaces and random bytes: each ends only its own
connection, with the error code RFC 9113 names, and never raises out of the
protocol (asyncio's "Fatal error: protocol.data_received() call failed")."""

from __future__ import annotations

import asyncio
import logging
import random
import struct
from typing import Any

import pytest
from hostile_support import (
    FRAME_SIZE_ERROR,
    PREFACE,
    PROTOCOL_ERROR,
    Bystander,
    RawPeer,
    peer,
    request_headers,
    until,
)
from hyperframe.frame import HeadersFrame, PingFrame, SettingsFrame

FLOW_CONTROL_ERROR = 0x3
STREAM_CLOSED = 0x5


def frame(kind: int, flags: int, stream_id: int, payload: bytes, length: int | None = None) -> bytes:
    n = len(payload) if length is None else length
    return n.to_bytes(3, "big") + bytes([kind, flags]) + struct.pack(">I", stream_id) + payload


def settings(*pairs: tuple[int, int]) -> bytes:
    return frame(0x4, 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def headers_block(raw: RawPeer, path: str = "/h.Echo/Unary") -> bytes:
    return raw.block(request_headers(path))


# (name, builder(raw) -> bytes, expected GOAWAY code)
CASES: list[tuple[str, Any, int]] = [
    ("DATA on stream 0", lambda raw: frame(0x0, 0, 0, b"x"), PROTOCOL_ERROR),
    ("HEADERS on an even stream", lambda raw: frame(0x1, 0x4, 2, headers_block(raw)), PROTOCOL_ERROR),
    ("HEADERS on stream 0", lambda raw: frame(0x1, 0x4, 0, headers_block(raw)), PROTOCOL_ERROR),
    ("WINDOW_UPDATE of 0 on the connection", lambda raw: frame(0x8, 0, 0, struct.pack(">I", 0)), PROTOCOL_ERROR),
    ("WINDOW_UPDATE overflowing the connection window", lambda raw: frame(0x8, 0, 0, struct.pack(">I", 2**31 - 1)), FLOW_CONTROL_ERROR),
    ("SETTINGS ENABLE_PUSH=2", lambda raw: settings((0x2, 2)), PROTOCOL_ERROR),
    ("SETTINGS INITIAL_WINDOW_SIZE=2^31", lambda raw: settings((0x4, 2**31)), FLOW_CONTROL_ERROR),
    ("SETTINGS MAX_FRAME_SIZE=100", lambda raw: settings((0x5, 100)), PROTOCOL_ERROR),
    ("SETTINGS of 5 bytes", lambda raw: frame(0x4, 0, 0, b"\x00\x01\x00\x00\x10"), FRAME_SIZE_ERROR),
    ("SETTINGS on a stream", lambda raw: frame(0x4, 0, 1, b""), PROTOCOL_ERROR),
    ("PING of 7 bytes", lambda raw: frame(0x6, 0, 0, b"1234567"), FRAME_SIZE_ERROR),
    ("PING on a stream", lambda raw: frame(0x6, 0, 1, b"12345678"), PROTOCOL_ERROR),
    ("frame over SETTINGS_MAX_FRAME_SIZE", lambda raw: frame(0x0, 0, 1, b"", length=20000), FRAME_SIZE_ERROR),
    ("frame of 16 MiB announced", lambda raw: frame(0x0, 0, 1, b"", length=2**24 - 1), FRAME_SIZE_ERROR),
    ("CONTINUATION without HEADERS", lambda raw: frame(0x9, 0x4, 1, headers_block(raw)), PROTOCOL_ERROR),
    ("RST_STREAM on an idle stream", lambda raw: frame(0x3, 0, 99, struct.pack(">I", 8)), PROTOCOL_ERROR),
    ("RST_STREAM of 3 bytes", lambda raw: frame(0x3, 0, 1, b"\x00\x00\x08"), FRAME_SIZE_ERROR),
    ("PUSH_PROMISE from a client", lambda raw: frame(0x5, 0x4, 1, struct.pack(">I", 2) + headers_block(raw)), PROTOCOL_ERROR),
    ("PRIORITY of 4 bytes", lambda raw: frame(0x2, 0, 1, b"\x00\x00\x00\x00"), FRAME_SIZE_ERROR),
    (
        "stream ids going down",
        lambda raw: frame(0x1, 0x5, 5, headers_block(raw)) + frame(0x1, 0x5, 3, headers_block(raw)),
        PROTOCOL_ERROR,
    ),
    (
        "padding longer than the frame",
        lambda raw: frame(0x1, 0x4 | 0x8, 1, bytes([200]) + headers_block(raw)),
        PROTOCOL_ERROR,
    ),
]


@pytest.mark.parametrize("build,code", [(b, c) for _, b, c in CASES], ids=[n for n, _, _ in CASES])
async def test_invalid_frame_ends_the_connection_with_the_right_code(
    serve: Any, build: Any, code: int, caplog: pytest.LogCaptureFixture
) -> None:
    server, echo = await serve()
    async with Bystander(server.port):
        async with peer(server.port) as raw:
            raw.handshake()
            raw.send(build(raw))
            goaway = await raw.goaway()
            assert goaway.error_code == code, goaway
            await raw.until_closed()
    await until(lambda: not server._state.connections)  # type: ignore[union-attr]
    assert not [r for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.ERROR]


async def test_data_beyond_the_stream_window_is_a_flow_control_error(serve: Any) -> None:
    server, _ = await serve(http2_stream_window_size=65535, http2_connection_window_size=1 << 20)
    async with peer(server.port) as raw:
        raw.handshake()
        sid = raw.open_stream(request_headers("/h.Echo/Hang"), end=False)
        for _ in range(5):  # 80 000 bytes into a 65 535-byte window nobody reads
            raw.send(frame(0x0, 0, sid, b"\x00" * 16000))
        goaway = await raw.goaway()
        assert goaway.error_code == FLOW_CONTROL_ERROR
        await raw.until_closed()


async def test_unknown_frame_types_and_client_goaway_fields_are_ignored(serve: Any) -> None:
    server, _ = await serve()
    async with peer(server.port) as raw:
        raw.handshake()
        raw.send(frame(0xFA, 0xFF, 0, b"whatever") + frame(0xFB, 0, 7, b"x" * 100))
        sid = raw.call("still fine")
        await raw.read_until(lambda: any("END_STREAM" in f.flags for f in raw.headers_of(sid)))
        assert not raw.goaways()


@pytest.mark.parametrize(
    "opening",
    [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"],
    ids=["HTTP/1.1", "corrupt preface", "TLS ClientHello"],
)
async def test_not_http2_is_closed(serve: Any, opening: bytes) -> None:
    server, _ = await serve()
    async with Bystander(server.port):
        async with peer(server.port) as raw:
            raw.send(opening)
            await raw.until_closed()
    await until(lambda: not server._state.connections)  # type: ignore[union-attr]


async def test_client_trailers_without_end_stream(serve: Any) -> None:
    server, _ = await serve()
    async with peer(server.port) as raw:
        raw.handshake()
        sid = raw.open_stream(request_headers("/h.Echo/Hang"), end=False)
        raw.send(HeadersFrame(sid, raw.block([(b"x-trailer", b"v")]), flags=["END_HEADERS"]).serialize())
        goaway = await raw.goaway()
        assert goaway.error_code == PROTOCOL_ERROR
        await raw.until_closed()


async def test_data_after_end_stream(serve: Any) -> None:
    server, _ = await serve()
    async with peer(server.port) as raw:
        raw.handshake()
        sid = raw.open_stream(request_headers("/h.Echo/Hang"), body=b"\x00\x00\x00\x00\x00")
        raw.send(frame(0x0, 0, sid, b"late"))
        await raw.read_until(lambda: bool(raw.goaways()) or bool(raw.resets(sid)))
        codes = [g.error_code for g in raw.goaways()] + [r.error_code for r in raw.resets(sid)]
        assert STREAM_CLOSED in codes


# -- random input ------------------------------------------------------------------


def random_frames(rng: random.Random) -> bytes:
    """A few frames with random types, flags, stream ids and payloads."""
    out = bytearray()
    for _ in range(rng.randint(1, 8)):
        kind = rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, rng.randint(10, 255)])
        payload = rng.randbytes(rng.choice([0, 1, 4, 5, 8, 9, rng.randint(0, 300)]))
        out += frame(kind, rng.randint(0, 255), rng.choice([0, 1, 2, 3, 5, rng.randint(0, 2**31 - 1)]), payload)
    return bytes(out)


async def test_random_bytes_never_break_the_server(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    """300 connections of random input (raw bytes, random frames after a valid
    preface, random frames inside a valid request): each ends or is served,
    none raises out of the protocol, and the bystander is served throughout."""
    server, _ = await serve(handshake_timeout=0.5, header_timeout=0.5)
    rng = random.Random(20261121)
    caplog.set_level(logging.ERROR, logger="asyncio")

    async def one(i: int) -> None:
        raw = await RawPeer.connect(server.port)  # type: ignore[arg-type]
        try:
            mode = i % 3
            if mode == 0:
                raw.send(rng.randbytes(rng.randint(1, 2000)))
            elif mode == 1:
                raw.send(PREFACE + SettingsFrame(0).serialize() + random_frames(rng))
                raw.send(PingFrame(0, opaque_data=b"12345678").serialize())
            else:
                raw.handshake()
                sid = raw.call(str(i))
                raw.send(random_frames(rng))
                raw.send(PingFrame(0, opaque_data=b"12345678").serialize())
                _ = sid
            # Either the server ends the connection or it keeps answering.
            def answered() -> bool:
                return any(isinstance(f, PingFrame) and "ACK" in f.flags for f in raw.frames)

            try:
                await raw.read_until(answered, timeout=3)
            except asyncio.TimeoutError:
                pass
            assert raw.eof or answered(), f"case {i}: no reaction"
        finally:
            await raw.close()

    async with Bystander(server.port):
        for start in range(0, 300, 30):
            await asyncio.gather(*(one(i) for i in range(start, start + 30)))
    await until(lambda: not server._state.connections)  # type: ignore[union-attr]
    assert not [r for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.ERROR]
