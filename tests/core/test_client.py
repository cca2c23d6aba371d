"""The client ``Channel``: connection errors, reconnection, concurrency on one
connection, message sizes from 0 bytes to 8 MiB, against our server and grpcio's."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from core_helpers import BV, SS, SV, UU, Service, echo_service, grpcio_method
from grpcasgi.client import Channel, UnaryUnaryMethod
from grpcasgi.config import Configuration
from grpcasgi.exceptions import GRPCError, ProtocolError
from grpcasgi.protocol.status import Status
from grpcasgi.server import Server

MiB = 1024 * 1024


def assert_same(got: bytes, expected: bytes) -> None:
    """Compare payloads without letting pytest render megabytes of repr."""
    same = got == expected
    assert same, f"payload differs: got {len(got)} bytes, expected {len(expected)}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_connection_refused_is_unavailable(make_channel: Any) -> None:
    channel = make_channel(_free_port())
    method = UnaryUnaryMethod(channel, "/core.Echo/Unary", SV, SV)
    with pytest.raises(GRPCError) as info:
        await method(SV(value="x"))
    assert info.value.status is Status.UNAVAILABLE
    assert "connect" in (info.value.message or "")
    # Same again: a failed connect is not cached as a broken connection.
    with pytest.raises(GRPCError) as info:
        await method(SV(value="x"))
    assert info.value.status is Status.UNAVAILABLE


async def test_missing_unix_socket_is_unavailable(make_channel: Any, tmp_path: Any) -> None:
    channel = make_channel(path=str(tmp_path / "missing.sock"))
    with pytest.raises(GRPCError) as info:
        await UnaryUnaryMethod(channel, "/core.Echo/Unary", SV, SV)(SV())
    assert info.value.status is Status.UNAVAILABLE


async def test_reconnects_after_server_restart(make_channel: Any) -> None:
    server = Server([echo_service()])
    await server.start("127.0.0.1", 0)
    port = server.port
    channel = make_channel(port)
    method = UnaryUnaryMethod(channel, "/core.Echo/Unary", SV, SV)
    assert (await method(SV(value="1"))).value == "1"
    server.close()
    await server.wait_closed()
    with pytest.raises(GRPCError) as info:
        await method(SV(value="down"))
    assert info.value.status is Status.UNAVAILABLE
    server = Server([echo_service()])
    await server.start("127.0.0.1", port)
    try:
        # The failed connect started the reconnect backoff: a call that waits
        # for ready connects once it is over (a fail-fast one would get
        # UNAVAILABLE until then, see tests/hostile/test_client_resilience.py).
        assert (await method(SV(value="2"), wait_for_ready=True, timeout=10)).value == "2"
    finally:
        server.close()
        await server.wait_closed()


async def test_server_going_away_mid_call_is_unavailable(make_channel: Any) -> None:
    started = asyncio.Event()

    async def handler(stream: Any) -> None:
        await stream.recv_message()
        started.set()
        await asyncio.Event().wait()

    server = Server([Service("core.T", M=(handler, UU))])
    await server.start("127.0.0.1", 0)
    channel = make_channel(server.port)
    call = asyncio.ensure_future(UnaryUnaryMethod(channel, "/core.T/M", SV, SV)(SV()))
    await asyncio.wait_for(started.wait(), 3)
    server.close()
    with pytest.raises(GRPCError) as info:
        await asyncio.wait_for(call, 5)
    assert info.value.status is Status.UNAVAILABLE
    await server.wait_closed()


async def test_request_on_closed_channel_is_unavailable(server: Any) -> None:
    channel = Channel("127.0.0.1", server.port)
    method = UnaryUnaryMethod(channel, "/core.Echo/Unary", SV, SV)
    assert (await method(SV(value="x"))).value == "x"
    await channel.__aexit__(None, None, None)
    with pytest.raises(GRPCError) as info:
        await method(SV(value="x"))
    assert info.value.status is Status.UNAVAILABLE


async def test_channel_as_async_context_manager(server: Any) -> None:
    async with Channel("127.0.0.1", server.port) as channel:
        assert (await UnaryUnaryMethod(channel, "/core.Echo/Unary", SV, SV)(SV(value="x"))).value == "x"


async def test_error_raised_in_block_is_not_raised_again_on_exit(start_server: Any, make_channel: Any) -> None:
    async def handler(stream: Any) -> None:
        await stream.recv_message()
        await stream.cancel()

    server = await start_server([Service("core.T", M=(handler, UU))])
    channel = make_channel(server.port)
    async with channel.request("/core.T/M", UU, SV, SV) as stream:
        await stream.send_message(SV(), end=True)
        with pytest.raises(GRPCError) as info:
            await stream.recv_message()
        assert info.value.status is Status.CANCELLED
    # Leaving the block without reading trailers raises the call's status.
    with pytest.raises(GRPCError) as info:
        async with channel.request("/core.T/M", UU, SV, SV) as stream:
            await stream.send_message(SV(), end=True)
    assert info.value.status is Status.CANCELLED


async def test_stream_misuse_is_protocol_error(channel: Any) -> None:
    async with channel.request("/core.Echo/Unary", UU, SV, SV) as stream:
        with pytest.raises(ProtocolError):
            await stream.recv_message()
        await stream.send_message(SV(value="x"), end=True)
        with pytest.raises(ProtocolError):
            await stream.send_message(SV(value="y"))
        with pytest.raises(ProtocolError):
            await stream.send_request()
        assert (await stream.recv_message()).value == "x"
        assert await stream.recv_message() is None
        await stream.recv_trailing_metadata()
    assert stream.trailing_metadata is not None
    assert stream.peer is not None and stream.peer.addr()[0] == "127.0.0.1"


async def test_thousand_concurrent_calls_on_one_connection(start_server: Any, make_channel: Any) -> None:
    peers: set[Any] = set()

    async def handler(stream: Any) -> None:
        request = await stream.recv_message()
        peers.add(stream.peer.addr())
        await stream.send_message(SV(value=request.value))

    server = await start_server([Service("core.T", M=(handler, UU))])
    method = UnaryUnaryMethod(make_channel(server.port), "/core.T/M", SV, SV)
    replies = await asyncio.gather(*(method(SV(value=str(i))) for i in range(1000)))
    assert [r.value for r in replies] == [str(i) for i in range(1000)]
    assert len(peers) == 1


async def test_thousand_concurrent_calls_against_grpcio(grpcio_server: Any, make_channel: Any) -> None:
    peers: set[str] = set()

    async def unary(request: Any, context: Any) -> Any:
        peers.add(context.peer())
        return SV(value=request.value)

    port = await grpcio_server("core.G", {"M": (UU, unary)})
    method = UnaryUnaryMethod(make_channel(port), "/core.G/M", SV, SV)
    replies = await asyncio.gather(*(method(SV(value=str(i))) for i in range(1000)))
    assert [r.value for r in replies] == [str(i) for i in range(1000)]
    assert len(peers) == 1


async def test_more_calls_than_max_concurrent_streams_queue(start_server: Any, make_channel: Any) -> None:
    server = await start_server(config=Configuration(http2_max_concurrent_streams=10))
    method = UnaryUnaryMethod(make_channel(server.port), "/core.Echo/Unary", SV, SV)
    replies = await asyncio.gather(*(method(SV(value=str(i))) for i in range(200)))
    assert [r.value for r in replies] == [str(i) for i in range(200)]


BIG = Configuration(max_receive_message_length=16 * MiB)
GRPCIO_BIG = [("grpc.max_receive_message_length", 16 * MiB), ("grpc.max_send_message_length", 16 * MiB)]


@pytest.mark.parametrize("size", [0, 1, 8 * MiB])
async def test_message_sizes_our_client_our_server(start_server: Any, make_channel: Any, size: int) -> None:
    server = await start_server(config=BIG)
    method = UnaryUnaryMethod(make_channel(server.port, config=BIG), "/core.Echo/Bytes", BV, BV)
    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    reply = await method(BV(value=payload))
    assert_same(reply.value, payload)


async def test_big_messages_bidi(start_server: Any, make_channel: Any) -> None:
    """Several 8 MiB messages each way on one stream, sent and received concurrently
    (sending everything before reading would deadlock on flow control, by design)."""

    async def handler(stream: Any) -> None:
        async for message in stream:
            await stream.send_message(message)

    server = await start_server([Service("core.T", M=(handler, SS, BV, BV))], config=BIG)
    channel = make_channel(server.port, config=BIG)
    messages = [BV(value=bytes([i]) * 8 * MiB) for i in range(3)]
    async with channel.request("/core.T/M", SS, BV, BV) as stream:
        await stream.send_request()

        async def send_all() -> None:
            for message in messages:
                await stream.send_message(message)
            await stream.end()

        sender = asyncio.ensure_future(send_all())
        replies = [reply async for reply in stream]
        await sender
    assert len(replies) == len(messages)
    for got, sent in zip(replies, messages):
        assert_same(got.value, sent.value)


@pytest.mark.parametrize("size", [0, 8 * MiB])
async def test_message_sizes_grpcio_client_our_server(start_server: Any, size: int) -> None:
    import grpc

    server = await start_server(config=BIG)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}", options=GRPCIO_BIG) as ch:
        payload = b"\xab" * size
        reply = await grpcio_method(ch, "/core.Echo/Bytes", UU, BV, BV)(BV(value=payload))
    assert_same(reply.value, payload)


@pytest.mark.parametrize("size", [0, 8 * MiB])
async def test_message_sizes_our_client_grpcio_server(grpcio_server: Any, make_channel: Any, size: int) -> None:
    async def echo(request: Any, context: Any) -> Any:
        return request

    port = await grpcio_server("core.G", {"M": (UU, echo, BV, BV)}, options=GRPCIO_BIG)
    method = UnaryUnaryMethod(make_channel(port, config=BIG), "/core.G/M", BV, BV)
    payload = b"\xcd" * size
    assert_same((await method(BV(value=payload))).value, payload)


async def test_default_limit_rejects_big_reply_on_client(start_server: Any, make_channel: Any) -> None:
    """The client's own 4 MiB default applies to replies: RESOURCE_EXHAUSTED, then the channel still works."""
    server = await start_server(config=BIG)
    channel = make_channel(server.port)
    method = UnaryUnaryMethod(channel, "/core.Echo/Bytes", BV, BV)
    with pytest.raises(GRPCError) as info:
        await method(BV(value=b"x" * (5 * MiB)), timeout=10)
    assert info.value.status is Status.RESOURCE_EXHAUSTED
    assert (await method(BV(value=b"small"))).value == b"small"


async def test_oversized_request_metadata_fails_only_that_call(start_server: Any, make_channel: Any) -> None:
    """Metadata over the server's advertised header list limit fails locally (RESOURCE_EXHAUSTED):
    sent, it would cost the whole connection, including calls in flight on it."""
    release = asyncio.Event()

    async def handler(stream: Any) -> None:
        await stream.recv_message()
        await release.wait()
        await stream.send_message(SV(value="survived"))

    server = await start_server(
        [Service("core.T", M=(handler, UU)), echo_service()], config=Configuration(http2_max_header_list_size=4096)
    )
    channel = make_channel(server.port)
    echo = UnaryUnaryMethod(channel, "/core.Echo/Unary", SV, SV)
    assert (await echo(SV(value="warm"))).value == "warm"  # the server's SETTINGS are known now
    in_flight = asyncio.ensure_future(UnaryUnaryMethod(channel, "/core.T/M", SV, SV)(SV()))
    with pytest.raises(GRPCError) as info:
        await echo(SV(value="x"), metadata={"x-big": "v" * 8000})
    assert info.value.status is Status.RESOURCE_EXHAUSTED
    assert "MAX_HEADER_LIST_SIZE" in (info.value.message or "")
    release.set()
    assert (await asyncio.wait_for(in_flight, 5)).value == "survived"
    assert (await echo(SV(value="after"))).value == "after"


@pytest.mark.parametrize("replies", [0, 2])
async def test_unary_call_with_wrong_reply_count_is_unimplemented(
    start_server: Any, make_channel: Any, replies: int
) -> None:
    """A server breaking the response cardinality (a unary call answered by a
    streaming handler): UNIMPLEMENTED, as the gRPC status code table says."""
    from grpcasgi.client import StreamUnaryMethod

    async def handler(stream: Any) -> None:
        async for _ in stream:
            pass
        for i in range(replies):
            await stream.send_message(SV(value=str(i)))

    server = await start_server([Service("core.T", M=(handler, SS))])
    channel = make_channel(server.port)
    with pytest.raises(GRPCError) as info:
        await UnaryUnaryMethod(channel, "/core.T/M", SV, SV)(SV())
    assert info.value.status is Status.UNIMPLEMENTED
    with pytest.raises(GRPCError) as info:
        await StreamUnaryMethod(channel, "/core.T/M", SV, SV)([SV(), SV()])
    assert info.value.status is Status.UNIMPLEMENTED


@pytest.mark.parametrize("status", [Status.OK, Status.PERMISSION_DENIED])
async def test_client_streaming_on_after_the_server_answered(
    start_server: Any, make_channel: Any, status: Status
) -> None:
    """A server may answer a client-streaming call before reading it all. The client's
    further sends (small or large) are dropped quietly; the outcome comes from receiving."""

    async def handler(stream: Any) -> None:
        await stream.recv_message()
        if status is not Status.OK:
            raise GRPCError(status, "enough")
        await stream.send_message(BV(value=b"enough"))

    server = await start_server([Service("core.T", M=(handler, SS, BV, BV))], config=BIG)
    channel = make_channel(server.port, config=BIG)
    async with channel.request("/core.T/M", SS, BV, BV) as stream:
        await stream.send_message(BV(value=b"first"))
        await stream.recv_initial_metadata()
        if status is Status.OK:
            assert (await stream.recv_message()).value == b"enough"
        for _ in range(8):
            await stream.send_message(BV(value=b"z" * MiB))
        await stream.end()
        if status is Status.OK:
            assert await stream.recv_message() is None
        else:
            with pytest.raises(GRPCError) as info:
                await stream.recv_message()
            assert (info.value.status, info.value.message) == (status, "enough")
