"""Floods and stalls: rapid reset, CONTINUATION, PING, HPACK bombs, peers
that never read. The server survives with bounded memory and no pile-up of
tasks, the offender is told why (GOAWAY code), and a well-behaved client on
another connection is served throughout."""

from __future__ import annotations

import asyncio
from typing import Any

from hostile_support import (

    COMPRESSION_ERROR,
    ENHANCE_YOUR_CALM,
    PROTOCOL_ERROR,
    SV,
    Bystander,
    grpc_frame,
    peer,
    request_headers,
    rss_bytes,
    until,
)
from hyperframe.frame import HeadersFrame, SettingsFrame

from grpcasgi.server import Server
from grpcasgi.transport.base import HIGH_WATER
from grpcasgi.transport.guard import header_block_limit


def connections(server: Server) -> list[Any]:
    assert server._state is not None
    return list(server._state.connections)


class TaskPeak:
    """Samples the number of asyncio tasks once per loop iteration."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = False
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while not self._stop:
            self.peak = max(self.peak, len(asyncio.all_tasks()))
            await asyncio.sleep(0)

    def __enter__(self) -> "TaskPeak":
        self._task = asyncio.ensure_future(self._run())
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop = True

    async def stopped(self) -> None:
        self._stop = True
        if self._task is not None:
            await self._task


async def test_rapid_reset_gets_enhance_your_calm_without_piling_up_tasks(serve: Any) -> None:
    server, echo = await serve(http2_max_concurrent_streams=100)
    async with Bystander(server.port):
        baseline = len(asyncio.all_tasks())
        with TaskPeak() as peak:
            async with peer(server.port) as raw:
                raw.handshake()
                sent = 0
                while not raw.goaways() and not raw.eof and sent < 20_000:
                    batch = bytearray()
                    for _ in range(250):  # HEADERS + RST_STREAM, again and again
                        sid = raw.open_stream(request_headers("/h.Echo/Hang"), body=grpc_frame(b""))
                        raw.reset(sid)
                        sent += 1
                    await raw.drain()
                    try:
                        await asyncio.wait_for(raw.read_once(), 0.01)
                    except asyncio.TimeoutError:
                        pass
                goaway = await raw.goaway()
                assert goaway.error_code == ENHANCE_YOUR_CALM
                assert goaway.additional_data.startswith(b"too many streams reset")
                await raw.until_closed()
        await peak.stopped()
        # The budget (500/s sustained, 1000 at once) stopped it early, and
        # calls winding down never exceeded twice the stream limit.
        assert sent < 20_000
        assert peak.peak - baseline <= 2 * 100 + 20, (peak.peak, baseline)
    assert echo.running == 0
    await until(lambda: len(connections(server)) == 0)


async def test_continuation_flood_is_capped_by_bytes(serve: Any) -> None:
    server, _ = await serve()
    limit = header_block_limit(server.config.http2_max_header_list_size)
    async with Bystander(server.port):
        async with peer(server.port) as raw:
            raw.handshake()
            raw.send(HeadersFrame(1, b"\x00" * 16000).serialize())  # no END_HEADERS
            for _ in range(4):  # 5 frames, 80 kB: h2 alone allows 64 such frames (1 MB)
                raw.continuation(1, b"\x00" * 16000)
            goaway = await raw.goaway()
            assert goaway.error_code == ENHANCE_YOUR_CALM
            assert goaway.last_stream_id == 0
            await raw.until_closed()
    assert limit == 64 * 1024


async def test_continuation_flood_of_tiny_frames(serve: Any) -> None:
    server, _ = await serve()
    async with Bystander(server.port):
        async with peer(server.port) as raw:
            raw.handshake()
            raw.send(HeadersFrame(1, b"\x00").serialize())
            for _ in range(1000):
                raw.continuation(1, b"\x00")
            goaway = await raw.goaway()
            assert goaway.error_code == PROTOCOL_ERROR  # h2's 64-frame backlog
            await raw.until_closed()


async def test_ping_flood_from_a_peer_that_never_reads(serve: Any) -> None:
    server, _ = await serve()
    async with Bystander(server.port):
        async with peer(server.port) as raw:
            raw.handshake()
            raw.send(b"".join(bytes(f) for f in [_ping(i) for i in range(20_000)]))
            await raw.drain()
            goaway = await raw.goaway()  # read only now: too_many_pings was sent long before
            assert (goaway.error_code, goaway.additional_data) == (ENHANCE_YOUR_CALM, b"too_many_pings")
            await raw.until_closed()
    await until(lambda: len(connections(server)) == 0)


def _ping(i: int) -> bytes:
    from hyperframe.frame import PingFrame

    return bytes(PingFrame(0, opaque_data=i.to_bytes(8, "big")).serialize())


async def test_hpack_bomb_is_refused(serve: Any) -> None:
    server, echo = await serve()
    async with Bystander(server.port):
        async with peer(server.port) as raw:
            raw.handshake()
            # One 4000-byte header into the dynamic table (index 62), then
            # that index 2000 times: ~8 MB of headers from ~6 KB on the wire.
            literal = b"\x40" + bytes([6]) + b"x-bomb" + b"\x7f" + _varint(4000 - 127) + b"a" * 4000
            block = raw.block(request_headers()) + literal + b"\xbe" * 2000
            raw.send(HeadersFrame(1, block, flags=["END_HEADERS", "END_STREAM"]).serialize())
            goaway = await raw.goaway()
            assert goaway.error_code == ENHANCE_YOUR_CALM
            await raw.until_closed()
    assert echo.entered > 0  # only the bystander's calls


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


async def test_invalid_hpack_is_a_compression_error(serve: Any) -> None:
    server, _ = await serve()
    async with Bystander(server.port):
        async with peer(server.port) as raw:
            raw.handshake()
            raw.send(HeadersFrame(1, b"\xff\xff\xff\xff\x0f", flags=["END_HEADERS"]).serialize())  # index out of range
            goaway = await raw.goaway()
            assert goaway.error_code == COMPRESSION_ERROR
            await raw.until_closed()


async def test_zero_window_peer_holds_bounded_memory(serve: Any) -> None:
    """A client asks for big responses and never opens its window: each call
    holds at most HIGH_WATER plus one message, other connections are unaffected."""
    server, echo = await serve()
    streams = 20
    async with Bystander(server.port):
        rss_before = rss_bytes()
        async with peer(server.port) as raw:
            raw.handshake({SettingsFrame.INITIAL_WINDOW_SIZE: 0})
            for _ in range(streams):  # 1000 x 16 KiB = 16 MiB asked of each call
                raw.open_stream(request_headers("/h.Echo/StreamOut"), body=grpc_frame(SV(value="1000").SerializeToString()))
            await raw.drain()

            async def stalled() -> list[Any]:
                while True:
                    conns = [c for c in connections(server) if len(c.calls) == streams]
                    if conns and all(call.writer._drain is not None for call in conns[0].calls.values()):
                        return conns
                    await asyncio.sleep(0.01)

            (conn,) = await asyncio.wait_for(stalled(), 10)
            held = sum(call.writer.size for call in conn.calls.values())
            assert held <= streams * (HIGH_WATER + 2 * (16384 + 16)), held
            assert echo.entered >= streams
            # The bystander keeps being served meanwhile (checked on exit).
        await until(lambda: len(connections(server)) == 1)  # the bystander's; the stalled one closed with the peer
        assert rss_bytes() - rss_before < 64 * 1024 * 1024


async def test_peer_that_never_reads_the_socket_holds_bounded_memory(serve: Any) -> None:
    """Big windows granted, socket never read: output stops at the transport's
    high-water mark plus one pump, and the server stops reading that peer."""
    server, _ = await serve()
    streams = 10
    async with Bystander(server.port):
        async with peer(server.port) as raw:
            raw.handshake({SettingsFrame.INITIAL_WINDOW_SIZE: 2**31 - 1})
            raw.window_update(0, 2**31 - 1 - 65535)
            for _ in range(streams):
                raw.open_stream(request_headers("/h.Echo/StreamOut"), body=grpc_frame(SV(value="2000").SerializeToString()))
            await raw.drain()

            async def stalled() -> Any:
                while True:
                    conns = [c for c in connections(server) if len(c.calls) == streams]
                    if conns and all(call.writer._drain is not None for call in conns[0].calls.values()):
                        return conns[0]
                    await asyncio.sleep(0.01)

            conn = await asyncio.wait_for(stalled(), 20)
            assert conn.transport is not None
            unsent = conn.transport.get_write_buffer_size()
            queued = sum(call.writer.size for call in conn.calls.values())
            bound = streams * (HIGH_WATER + 2 * (16384 + 16))
            assert unsent + queued <= 2 * bound, (unsent, queued)
            # Ping flood on top: the server has stopped reading this peer.
            raw.send(_ping(1) * 100_000)
    await until(lambda: len(connections(server)) == 0)


async def test_big_message_prefix_of_4_gib_is_refused_without_buffering(serve: Any) -> None:
    server, echo = await serve()
    async with Bystander(server.port):
        async with peer(server.port) as raw:
            raw.handshake()
            sid = raw.open_stream(request_headers(), body=b"\x00\xff\xff\xff\xff" + b"x" * 1000, end=False)
            await raw.read_until(lambda: any("END_STREAM" in f.flags for f in raw.headers_of(sid)))
            trailers = dict(raw.block and _decode_trailers(raw, sid))
            assert trailers[b"grpc-status"] == b"8"  # RESOURCE_EXHAUSTED
            assert not raw.goaways()
    assert echo.entered > 0


def _decode_trailers(raw: Any, sid: int) -> list[tuple[bytes, bytes]]:
    import hpack

    decoder = hpack.Decoder()
    headers: list[tuple[bytes, bytes]] = []
    for frame in raw.frames:
        if isinstance(frame, HeadersFrame):
            decoded = decoder.decode(frame.data, raw=True)
            if frame.stream_id == sid:
                headers = decoded
    return headers





async def test_call_reset_before_its_task_ran_is_cleaned_up(serve: Any) -> None:
    """HEADERS and RST_STREAM in one read: the call's task is cancelled before
    its first step. It used to stay registered on the connection forever
    (the coroutine never ran, not even its finally), so 2 x the stream limit
    of such resets left the connection refusing every new stream."""
    server, echo = await serve(http2_max_concurrent_streams=5)
    async with peer(server.port) as raw:
        raw.handshake()
        batch = []
        for _ in range(30):
            sid = raw.open_stream(request_headers("/h.Echo/Hang"), body=grpc_frame(b""))
            raw.reset(sid)
            batch.append(sid)
        raw.ping(b"settled!")  # its ACK comes after the server processed the resets
        from hyperframe.frame import PingFrame

        await raw.read_until(lambda: any(isinstance(f, PingFrame) and "ACK" in f.flags for f in raw.frames))
        ok = raw.call("still served")
        await raw.read_until(lambda: any("END_STREAM" in f.flags for f in raw.headers_of(ok)))
        assert not raw.resets(ok)
        (conn,) = connections(server)
        assert len(conn.calls) == 0
    assert echo.running == 0
