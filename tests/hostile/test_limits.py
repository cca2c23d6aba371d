"""Every connection limit of ``Configuration`` enforced by the bundled server,
seen from the wire (a raw HTTP/2 peer) and from our client."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hostile_support import (
    ENHANCE_YOUR_CALM,
    NO_ERROR,
    REFUSED_STREAM,
    SV,
    Bystander,
    RawPeer,
    peer,
    request_headers,
)
from hyperframe.frame import HeadersFrame, PingFrame, SettingsFrame

from grpcasgi.client import Channel, UnaryUnaryMethod
from grpcasgi.config import Configuration
from grpcasgi.exceptions import GRPCError
from grpcasgi.protocol.status import Status
from grpcasgi.transport.lifecycle import DRAIN_PING, KEEPALIVE_PING

MAX_STREAM_ID = 2**31 - 1


def server_settings(raw: RawPeer) -> dict[int, int]:
    for frame in raw.frames:
        if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
            return dict(frame.settings)
    raise AssertionError("no SETTINGS from the server")


async def test_max_concurrent_streams_refuses_excess_streams(serve: Any) -> None:
    server, echo = await serve(http2_max_concurrent_streams=2)
    async with peer(server.port) as raw:
        raw.handshake()
        first, second = raw.call(path="/h.Echo/Hang"), raw.call(path="/h.Echo/Hang")
        await raw.read_until(lambda: bool(raw.frames))
        assert server_settings(raw)[SettingsFrame.MAX_CONCURRENT_STREAMS] == 2
        third = raw.call()
        await raw.read_until(lambda: bool(raw.resets(third)))
        assert raw.resets(third)[0].error_code == REFUSED_STREAM
        assert echo.running == 2  # the third handler never ran
        assert not raw.goaways()  # a stream error, not a connection error
        raw.reset(first)
        # A slot is free again (the first handler is cancelled and gone).
        fourth = raw.call("again")
        await raw.read_until(lambda: any("END_STREAM" in f.flags for f in raw.headers_of(fourth)))
        assert not raw.resets(fourth)
        raw.reset(second)


async def test_a_burst_above_the_stream_limit_refuses_the_newest_streams(serve: Any) -> None:
    """Three requests in one read (nothing awaited between the writes, so the
    server reads them together): the streams within the limit run, the one
    above it is refused. h2 counts every stream of the read before the first
    request is handled; the server used to refuse stream 1 and serve stream 5."""
    server, echo = await serve(http2_max_concurrent_streams=2)
    async with peer(server.port) as raw:
        raw.handshake()
        first, second, third = raw.call(path="/h.Echo/Hang"), raw.call(path="/h.Echo/Hang"), raw.call()
        await raw.read_until(lambda: bool(raw.resets(third)))
        assert raw.resets(third)[0].error_code == REFUSED_STREAM
        assert not raw.resets(first) and not raw.resets(second)
        assert echo.running == 2
        raw.reset(first)
        raw.reset(second)


async def test_our_client_queues_above_the_stream_limit(serve: Any) -> None:
    server, _ = await serve(http2_max_concurrent_streams=3)
    async with Channel("127.0.0.1", server.port) as channel:
        method = UnaryUnaryMethod(channel, "/h.Echo/Unary", SV, SV)
        replies = await asyncio.gather(*(method(SV(value=str(i))) for i in range(30)))
    assert [r.value for r in replies] == [str(i) for i in range(30)]


async def test_oversized_header_list_is_a_connection_error_not_a_crash(serve: Any) -> None:
    server, echo = await serve(http2_max_header_list_size=4096)
    async with Bystander(server.port):
        async with peer(server.port) as raw:
            raw.handshake()
            await raw.read_until(lambda: bool(raw.frames))
            assert server_settings(raw)[SettingsFrame.MAX_HEADER_LIST_SIZE] == 4096
            raw.open_stream(request_headers(x_big="v" * 8000))
            goaway = await raw.goaway()
            assert goaway.error_code == ENHANCE_YOUR_CALM
            await raw.until_closed()
    assert echo.entered > 0  # only the bystander's calls


async def test_oversized_metadata_from_our_client_fails_the_call_only(serve: Any) -> None:
    server, _ = await serve(http2_max_header_list_size=4096)
    async with Channel("127.0.0.1", server.port) as channel:
        method = UnaryUnaryMethod(channel, "/h.Echo/Unary", SV, SV)
        with pytest.raises(GRPCError) as info:
            await method(SV(value="x"), metadata={"x-big": "v" * 8000}, timeout=5)
        assert info.value.status in (Status.UNAVAILABLE, Status.INTERNAL, Status.RESOURCE_EXHAUSTED)
        assert (await method(SV(value="after"), timeout=5)).value == "after"


async def test_max_connections_turns_extra_connections_away_politely(serve: Any) -> None:
    server, _ = await serve(max_connections=2)
    async with peer(server.port) as one, peer(server.port) as two:
        one.handshake()
        two.handshake()
        await one.read_until(lambda: bool(one.frames))
        await two.read_until(lambda: bool(two.frames))
        async with peer(server.port) as three:
            three.handshake()
            goaway = await three.goaway()
            assert (goaway.error_code, goaway.last_stream_id, goaway.additional_data) == (NO_ERROR, 0, b"max_connections")
            assert isinstance(three.frames[0], SettingsFrame)  # a proper HTTP/2 connection first
            await three.until_closed()
        # Our client sees UNAVAILABLE for the refused connection.
        async with Channel("127.0.0.1", server.port) as channel:
            with pytest.raises(GRPCError) as info:
                await UnaryUnaryMethod(channel, "/h.Echo/Unary", SV, SV)(SV(value="x"), timeout=5)
            assert info.value.status is Status.UNAVAILABLE
    # Both slots are free again.
    async with Channel("127.0.0.1", server.port) as channel:
        assert (await UnaryUnaryMethod(channel, "/h.Echo/Unary", SV, SV)(SV(value="y"), timeout=5)).value == "y"


async def test_idle_timeout_goaway_then_close(serve: Any) -> None:
    server, _ = await serve(idle_timeout=0.2)
    async with peer(server.port) as raw:
        raw.handshake()
        sid = raw.call()
        await raw.read_until(lambda: any("END_STREAM" in f.flags for f in raw.headers_of(sid)))
        first = await raw.goaway()
        assert (first.error_code, first.last_stream_id, first.additional_data) == (NO_ERROR, MAX_STREAM_ID, b"idle")
        await raw.read_until(lambda: any(isinstance(f, PingFrame) for f in raw.frames))
        ping = next(f for f in raw.frames if isinstance(f, PingFrame))
        assert ping.opaque_data == DRAIN_PING
        raw.ping(ping.opaque_data, ack=True)
        await raw.until_closed()
        finals = raw.goaways()
        assert [g.last_stream_id for g in finals] == [MAX_STREAM_ID, sid]


async def test_idle_timeout_is_invisible_to_our_client(serve: Any) -> None:
    server, _ = await serve(idle_timeout=0.1)
    async with Channel("127.0.0.1", server.port) as channel:
        method = UnaryUnaryMethod(channel, "/h.Echo/Unary", SV, SV)
        assert (await method(SV(value="1"))).value == "1"
        proto = channel._protocol
        assert proto is not None
        await asyncio.wait_for(asyncio.shield(proto.closed), 5)  # the server closed it
        assert (await method(SV(value="2"))).value == "2"  # a new connection, no error


async def test_busy_connection_is_not_idle(serve: Any) -> None:
    server, echo = await serve(idle_timeout=0.1)
    async with peer(server.port) as raw:
        raw.handshake()
        sid = raw.call(path="/h.Echo/Hang")
        await asyncio.sleep(0.3)  # three idle periods with a call running
        await raw.read_until(lambda: bool(raw.frames))
        assert echo.running == 1 and not raw.goaways()
        raw.reset(sid)
        await raw.goaway()  # idle once the call is gone


async def test_max_connection_age_goaway_lets_the_call_finish(serve: Any) -> None:
    server, _ = await serve(max_connection_age=0.1)
    async with peer(server.port) as raw:
        raw.handshake()
        sid = raw.call(path="/h.Echo/Hang")
        first = await raw.goaway()
        assert (first.last_stream_id, first.additional_data) == (MAX_STREAM_ID, b"max_age")
        ping = next(f for f in raw.frames if isinstance(f, PingFrame) and f.opaque_data == DRAIN_PING)
        raw.ping(ping.opaque_data, ack=True)
        await raw.read_until(lambda: len(raw.goaways()) == 2)
        assert raw.goaways()[1].last_stream_id == sid
        later = raw.call()
        await raw.read_until(lambda: bool(raw.resets(later)))
        assert raw.resets(later)[0].error_code == REFUSED_STREAM
        assert not raw.eof  # the running call keeps the connection (no grace limit)
        raw.reset(sid)
        await raw.until_closed()


async def test_max_connection_age_grace_cancels_what_is_left(serve: Any) -> None:
    server, echo = await serve(max_connection_age=0.1, max_connection_age_grace=0.2)
    async with Channel("127.0.0.1", server.port) as channel:
        hang = UnaryUnaryMethod(channel, "/h.Echo/Hang", SV, SV)
        unary = UnaryUnaryMethod(channel, "/h.Echo/Unary", SV, SV)
        call = asyncio.ensure_future(hang(SV(), timeout=10))
        with pytest.raises(GRPCError) as info:
            await call
        assert info.value.status is Status.UNAVAILABLE
        assert echo.running == 0
        # New calls go to a new connection meanwhile.
        assert (await unary(SV(value="new"), timeout=5)).value == "new"


async def test_server_keepalive_closes_a_silent_peer(serve: Any) -> None:
    server, _ = await serve(keepalive_time=0.1, keepalive_timeout=0.2)
    async with peer(server.port) as raw:
        raw.handshake()
        await raw.read_until(lambda: any(isinstance(f, PingFrame) and f.opaque_data == KEEPALIVE_PING for f in raw.frames))
        await raw.until_closed()  # no ACK: closed
        assert raw.goaways() and raw.goaways()[0].additional_data.startswith(b"keepalive")


async def test_server_keepalive_keeps_an_answering_peer(serve: Any) -> None:
    server, _ = await serve(keepalive_time=0.05, keepalive_timeout=0.2)
    async with peer(server.port) as raw:
        raw.handshake()
        acked = 0
        while acked < 4:
            await raw.read_once()
            for frame in raw.frames:
                if isinstance(frame, PingFrame) and "ACK" not in frame.flags:
                    raw.ping(frame.opaque_data, ack=True)
                    acked += 1
            raw.frames = [f for f in raw.frames if not isinstance(f, PingFrame)]
        assert not raw.goaways() and not raw.eof


async def test_too_many_pings_get_enhance_your_calm(serve: Any) -> None:
    server, _ = await serve(min_ping_interval=10, max_ping_strikes=2)
    async with Bystander(server.port):
        async with peer(server.port) as raw:
            raw.handshake()
            for i in range(4):  # the first one is free, then 2 strikes are tolerated
                raw.ping(bytes([i]) * 8)
            goaway = await raw.goaway()
            assert (goaway.error_code, goaway.additional_data) == (ENHANCE_YOUR_CALM, b"too_many_pings")
            await raw.until_closed()


async def test_pings_within_the_strikes_are_fine(serve: Any) -> None:
    server, _ = await serve(min_ping_interval=10, max_ping_strikes=2)
    async with peer(server.port) as raw:
        raw.handshake()
        for i in range(3):
            raw.ping(bytes([i]) * 8)
        sid = raw.call()
        await raw.read_until(lambda: any("END_STREAM" in f.flags for f in raw.headers_of(sid)))
        assert not raw.goaways()


async def test_pings_between_responses_are_not_strikes(serve: Any) -> None:
    # grpc core resets the strikes whenever the server sends data: a client
    # pinging alongside real traffic (BDP probes) is never penalised.
    server, _ = await serve(min_ping_interval=10, max_ping_strikes=1)
    async with peer(server.port) as raw:
        raw.handshake()
        for i in range(6):
            raw.ping(bytes([i]) * 8)
            raw.ping(bytes([i + 100]) * 8)
            sid = raw.call(str(i))
            await raw.read_until(lambda: any("END_STREAM" in f.flags for f in raw.headers_of(sid)))
        assert not raw.goaways()


async def test_settings_flood_gets_enhance_your_calm(serve: Any) -> None:
    server, _ = await serve()
    async with Bystander(server.port):
        async with peer(server.port) as raw:
            raw.handshake()
            raw.send(SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 65535}).serialize() * 1000)
            goaway = await raw.goaway()
            assert goaway.error_code == ENHANCE_YOUR_CALM
            await raw.until_closed()
            # h2 acknowledges each SETTINGS of the read it is processing;
            # the connection ends with that read, so the replies never
            # outgrow what the peer sent.
            acks = [f for f in raw.frames if isinstance(f, SettingsFrame) and "ACK" in f.flags]
            assert len(acks) <= 1 + 1000


async def test_handshake_timeout_closes_a_partial_preface(serve: Any) -> None:
    server, _ = await serve(handshake_timeout=0.2)
    async with Bystander(server.port):
        async with peer(server.port) as raw:
            raw.send(b"PRI * HTTP/2.0\r\n")
            await raw.until_closed(timeout=5)
        async with peer(server.port) as raw:  # preface, no SETTINGS
            raw.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            await raw.until_closed(timeout=5)
            assert raw.goaways()[0].additional_data.startswith(b"no HTTP/2 preface")


async def test_header_timeout_closes_a_header_block_held_open(serve: Any) -> None:
    server, echo = await serve(header_timeout=0.2)
    async with Bystander(server.port):
        async with peer(server.port) as raw:
            raw.handshake()
            block = raw.block(request_headers())
            raw.send(HeadersFrame(1, block[:5]).serialize())  # no END_HEADERS
            for i in range(5, len(block) - 1):  # dribbled, never finished
                raw.continuation(1, block[i : i + 1])
            await raw.until_closed(timeout=5)
            assert raw.goaways()[0].additional_data.startswith(b"a frame or header block stayed incomplete")


async def test_header_timeout_closes_a_partial_frame(serve: Any) -> None:
    server, _ = await serve(header_timeout=0.2)
    async with peer(server.port) as raw:
        raw.handshake()
        raw.send(b"\x00\x00\x10\x01\x04\x00\x00\x00\x01abc")  # 16-byte HEADERS frame, 3 bytes of it
        await raw.until_closed(timeout=5)


def test_limits_are_validated() -> None:
    for bad in (
        {"idle_timeout": 0},
        {"max_connections": 0},
        {"keepalive_time": -1},
        {"http2_max_resets_per_second": 0},
        {"handshake_timeout": 0},
        {"reconnect_jitter": 1.5},
        {"keepalive_permit_without_calls": "yes"},
    ):
        with pytest.raises((ValueError, TypeError)):
            Configuration(**bad)
    assert Configuration(handshake_timeout=None, header_timeout=None, idle_timeout=None).header_timeout is None



