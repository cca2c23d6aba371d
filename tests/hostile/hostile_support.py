"""Tools for the hostile-input tests: a raw HTTP/2 peer that sends whatever
bytes a test builds, a bystander client that must keep being served while
an attack runs, and measurements of what the server holds.

The raw peer has no HTTP/2 state machine of its own (frames are built with
``hyperframe`` and header blocks with ``hpack``), so it can send what no
library would, and it reads only when a test asks it to.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

import hpack
from google.protobuf import wrappers_pb2
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from grpcasgi.client import Channel, UnaryUnaryMethod
from grpcasgi.const import Cardinality, Handler

SV = wrappers_pb2.StringValue
BV = wrappers_pb2.BytesValue
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

ENHANCE_YOUR_CALM = 0xB
PROTOCOL_ERROR = 0x1
FRAME_SIZE_ERROR = 0x6
COMPRESSION_ERROR = 0x9
REFUSED_STREAM = 0x7
NO_ERROR = 0x0


class Echo:
    """``h.Echo``: Unary echoes, Bytes returns ``n`` bytes (n = request length), Hang never answers."""

    def __init__(self) -> None:
        self.entered = 0  # handler entries, for "never ran" assertions
        self.running = 0

    async def unary(self, stream: Any) -> None:
        req = await stream.recv_message()
        self.entered += 1
        await stream.send_message(SV(value=req.value))

    async def big(self, stream: Any) -> None:
        req = await stream.recv_message()
        self.entered += 1
        await stream.send_message(BV(value=b"x" * int(req.value or "0")))

    async def stream_out(self, stream: Any) -> None:
        req = await stream.recv_message()
        self.entered += 1
        chunk = b"y" * 16384
        for _ in range(int(req.value or "0")):
            await stream.send_message(BV(value=chunk))

    async def hang(self, stream: Any) -> None:
        self.entered += 1
        self.running += 1
        try:
            await asyncio.Event().wait()
        finally:
            self.running -= 1

    def __mapping__(self) -> dict[str, Handler]:
        return {
            "/h.Echo/Unary": Handler(self.unary, Cardinality.UNARY_UNARY, SV, SV),
            "/h.Echo/Big": Handler(self.big, Cardinality.UNARY_UNARY, SV, BV),
            "/h.Echo/StreamOut": Handler(self.stream_out, Cardinality.UNARY_STREAM, SV, BV),
            "/h.Echo/Hang": Handler(self.hang, Cardinality.UNARY_UNARY, SV, SV),
        }


def grpc_frame(payload: bytes) -> bytes:
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def request_headers(path: str = "/h.Echo/Unary", **extra: str) -> list[tuple[bytes, bytes]]:
    headers = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", path.encode()),
        (b":authority", b"127.0.0.1"),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
    ]
    return headers + [(k.replace("_", "-").encode(), v.encode()) for k, v in extra.items()]


@dataclass
class RawPeer:
    """A hostile HTTP/2 client on a real socket."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    encoder: hpack.Encoder = field(default_factory=hpack.Encoder)
    buffer: bytearray = field(default_factory=bytearray)
    frames: list[Frame] = field(default_factory=list)
    eof: bool = False
    next_stream_id: int = 1

    @classmethod
    async def connect(cls, port: int) -> "RawPeer":
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    # -- sending --------------------------------------------------------------

    def send(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    async def drain(self) -> None:
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()

    def handshake(self, settings: dict[int, int] | None = None) -> None:
        self.send(PREFACE + SettingsFrame(0, settings=settings or {}).serialize())

    def block(self, headers: list[tuple[bytes, bytes]]) -> bytes:
        return bytes(self.encoder.encode(headers))

    def open_stream(
        self, headers: list[tuple[bytes, bytes]] | None = None, *, body: bytes | None = None, end: bool = True
    ) -> int:
        """HEADERS (+ one DATA with END_STREAM when ``body`` is given); returns the stream id."""
        sid = self.next_stream_id
        self.next_stream_id += 2
        flags = ["END_HEADERS"]
        if end and body is None:
            flags.append("END_STREAM")
        self.send(HeadersFrame(sid, self.block(headers or request_headers()), flags=flags).serialize())
        if body is not None:
            self.send(DataFrame(sid, body, flags=["END_STREAM"] if end else []).serialize())
        return sid

    def call(self, value: str = "x", path: str = "/h.Echo/Unary") -> int:
        return self.open_stream(request_headers(path), body=grpc_frame(SV(value=value).SerializeToString()))

    def reset(self, sid: int, code: int = 0x8) -> None:
        self.send(RstStreamFrame(sid, error_code=code).serialize())

    def ping(self, data: bytes = b"\0" * 8, ack: bool = False) -> None:
        self.send(PingFrame(0, opaque_data=data, flags=["ACK"] if ack else []).serialize())

    def settings_ack(self) -> None:
        self.send(SettingsFrame(0, flags=["ACK"]).serialize())

    def window_update(self, sid: int, increment: int) -> None:
        self.send(WindowUpdateFrame(sid, window_increment=increment).serialize())

    def continuation(self, sid: int, data: bytes, end: bool = False) -> None:
        self.send(ContinuationFrame(sid, data, flags=["END_HEADERS"] if end else []).serialize())

    async def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()

    # -- receiving ------------------------------------------------------------------

    async def read_once(self) -> None:
        try:
            data = await self.reader.read(65536)
        except ConnectionError:
            data = b""
        if not data:
            self.eof = True
            return
        self.buffer += data
        while len(self.buffer) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(bytes(self.buffer[:9])))
            if len(self.buffer) < 9 + length:
                break
            frame.parse_body(memoryview(bytes(self.buffer[9 : 9 + length])))
            del self.buffer[: 9 + length]
            self.frames.append(frame)

    async def read_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        async def loop() -> None:
            while not predicate() and not self.eof:
                await self.read_once()

        await asyncio.wait_for(loop(), timeout)

    def goaways(self) -> list[GoAwayFrame]:
        return [f for f in self.frames if isinstance(f, GoAwayFrame)]

    async def goaway(self, timeout: float = 5.0) -> GoAwayFrame:
        """The first GOAWAY the server sends (fails if the connection ends without one)."""
        await self.read_until(lambda: bool(self.goaways()), timeout)
        assert self.goaways(), "the server closed the connection without GOAWAY"
        return self.goaways()[0]

    async def until_closed(self, timeout: float = 5.0) -> None:
        """Read (and keep) everything until the server closes the connection."""
        await self.read_until(lambda: False, timeout)

    def resets(self, sid: int | None = None) -> list[RstStreamFrame]:
        return [f for f in self.frames if isinstance(f, RstStreamFrame) and (sid is None or f.stream_id == sid)]

    def headers_of(self, sid: int) -> list[HeadersFrame]:
        return [f for f in self.frames if isinstance(f, HeadersFrame) and f.stream_id == sid]


class Bystander:
    """A well-behaved client calling the server in a loop while an attack runs.

    ``async with Bystander(port) as b: ...attack...`` then ``b.ok`` calls
    succeeded and none failed; leaving the block makes one more call that
    must succeed too.
    """

    def __init__(self, port: int, *, pace: float = 0.01, timeout: float = 5.0) -> None:
        self.port = port
        self.pace = pace
        self.timeout = timeout
        self.ok = 0
        self.failures: list[BaseException] = []
        self._stop = asyncio.Event()
        self._progress = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.channel = Channel("127.0.0.1", port)
        self.method = UnaryUnaryMethod(self.channel, "/h.Echo/Unary", SV, SV)

    async def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            try:
                reply = await self.method(SV(value=str(n)), timeout=self.timeout)
                assert reply.value == str(n)
                self.ok += 1
            except Exception as exc:  # recorded and asserted on exit
                self.failures.append(exc)
            self._progress.set()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.pace)

    async def wait_served(self, n: int = 1, timeout: float = 10.0) -> None:
        """Wait until at least ``n`` calls succeeded since the start."""

        async def loop() -> None:
            while self.ok < n and not self.failures:
                self._progress.clear()
                await self._progress.wait()

        await asyncio.wait_for(loop(), timeout)

    async def __aenter__(self) -> "Bystander":
        self._task = asyncio.ensure_future(self._run())
        await self.wait_served(1)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        before = self.ok
        try:
            if exc_info[0] is None:
                await self.wait_served(before + 1)
        finally:
            self._stop.set()
            assert self._task is not None
            await self._task
            await self.channel.__aexit__(None, None, None)
        if exc_info[0] is None:
            assert not self.failures, f"the well-behaved client failed during the attack: {self.failures[:3]}"
            assert self.ok > before


def rss_bytes() -> int:
    """This process's resident set size (Linux), or 0 where unknown."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


@contextlib.asynccontextmanager
async def peer(port: int) -> AsyncIterator[RawPeer]:
    raw = await RawPeer.connect(port)
    try:
        yield raw
    finally:
        await raw.close()


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait (polling each loop turn, bounded) until ``predicate()``: for server
    state that changes without an event a test could await (a connection's
    ``connection_lost`` running after the peer closed)."""

    async def loop() -> None:
        while not predicate():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(loop(), timeout)
