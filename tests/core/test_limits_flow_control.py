"""Message size limits and HTTP/2 flow control, judged from the wire.

* An oversized message is refused at its 5-byte prefix: RESOURCE_EXHAUSTED
  arrives while the body is still unsent, and the server resets the rest of
  the request instead of buffering it.
* A handler that does not read holds back its own client only: the client's
  ``send_message`` blocks once the stream window is used, while other calls on
  the same connection go on.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from core_helpers import BV, SS, SV, UU, RawH2, Service, echo_service, frame, grpc_request_headers
from grpcasgi.client import UnaryUnaryMethod
from grpcasgi.config import Configuration
from grpcasgi.exceptions import GRPCError
from grpcasgi.protocol.status import Status

MiB = 1024 * 1024


async def test_oversized_message_from_our_client(start_server: Any, make_channel: Any, caplog: Any) -> None:
    server = await start_server(config=Configuration(max_receive_message_length=1024))
    method = UnaryUnaryMethod(make_channel(server.port), "/core.Echo/Bytes", BV, BV)
    with caplog.at_level(logging.WARNING, logger="grpcasgi"):
        with pytest.raises(GRPCError) as info:
            await method(BV(value=b"x" * 2000))
    assert info.value.status is Status.RESOURCE_EXHAUSTED
    assert "larger than max" in (info.value.message or "")
    assert any("larger than max" in r.getMessage() for r in caplog.records)
    assert (await method(BV(value=b"x" * 1000))).value == b"x" * 1000


async def test_oversized_message_from_grpcio_client(start_server: Any) -> None:
    import grpc

    from core_helpers import grpcio_method

    server = await start_server(config=Configuration(max_receive_message_length=1024))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        method = grpcio_method(ch, "/core.Echo/Bytes", UU, BV, BV)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await method(BV(value=b"x" * 2000))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert (await method(BV(value=b"ok"))).value == b"ok"


async def test_huge_length_prefix_is_refused_at_once(server: Any, raw_h2: Any, caplog: Any) -> None:
    """A 4 GiB prefix followed by a trickle of body: RESOURCE_EXHAUSTED right away, the
    request stream reset (the server will not buffer it), the connection still serves."""
    raw = await raw_h2()
    with caplog.at_level(logging.WARNING, logger="grpcasgi"):
        sid = raw.request(grpc_request_headers("/core.Echo/Bytes"), b"\x00\xff\xff\xff\xff" + b"x" * 1000, end=False)
        resp = await raw.response(sid, timeout=3)
    assert resp.grpc_status == Status.RESOURCE_EXHAUSTED.value
    assert "4294967295" in resp.grpc_message
    assert any("larger than max" in r.getMessage() for r in caplog.records)
    # The server told us to stop sending the body (RST_STREAM NO_ERROR after trailers)
    # rather than keep reading it into memory.
    await raw.read_until(lambda: resp.reset is not None, timeout=3)
    assert resp.reset == 0
    sid2 = raw.request(grpc_request_headers("/core.Echo/Bytes"), frame(BV(value=b"fine").SerializeToString()))
    resp2 = await raw.response(sid2)
    assert resp2.grpc_status == 0 and BV.FromString(resp2.data[5:]).value == b"fine"


async def test_oversized_prefix_with_unread_body_keeps_connection_window(
    start_server: Any, caplog: Any
) -> None:
    """Bytes of a refused message sent after the refusal still get their connection credit back."""
    server = await start_server(config=Configuration(max_receive_message_length=1024))
    raw = await RawH2.connect(server.port)
    try:
        for _ in range(3):
            # Each request pushes 3 MiB (most of the 4 MiB connection window) after an oversized prefix.
            sid = raw.request(grpc_request_headers("/core.Echo/Bytes"), b"\x00\x00\x30\x00\x00", end=False)
            for _ in range(3 * 64):
                if raw.conn.local_flow_control_window(sid) < 16384:
                    break
                raw.send_data(sid, b"y" * 16384)
            resp = await raw.response(sid, timeout=3)
            assert resp.grpc_status == Status.RESOURCE_EXHAUSTED.value
        sid = raw.request(grpc_request_headers("/core.Echo/Bytes"), frame(BV(value=b"ok").SerializeToString()))
        assert (await raw.response(sid)).grpc_status == 0
    finally:
        await raw.close()


def _hold_service(release: asyncio.Event, received: list[int]) -> Service:
    """core.Hold/M: bidi; waits for ``release`` before reading anything, then counts bytes."""

    async def handler(stream: Any) -> None:
        await release.wait()
        async for message in stream:
            received.append(len(message.value))
        await stream.send_message(BV(value=b"done"))

    return Service("core.Hold", M=(handler, SS, BV, BV))


async def test_unread_handler_blocks_only_its_own_client(start_server: Any, make_channel: Any) -> None:
    release = asyncio.Event()
    received: list[int] = []
    server = await start_server(
        [_hold_service(release, received), echo_service()], config=Configuration(max_receive_message_length=2 * MiB)
    )
    channel = make_channel(server.port)
    echo = UnaryUnaryMethod(channel, "/core.Echo/Unary", SV, SV)
    chunk = b"z" * MiB
    total = 16
    sent = 0
    async with channel.request("/core.Hold/M", SS, BV, BV) as stream:
        await stream.send_request()

        async def producer() -> None:
            nonlocal sent
            for _ in range(total):
                await stream.send_message(BV(value=chunk))
                sent += 1
            await stream.end()

        task = asyncio.ensure_future(producer())
        # Other calls on the same connection proceed while the producer is stuck;
        # keep calling until its progress stops (bounded).
        last, stable = -1, 0
        for i in range(200):
            assert (await echo(SV(value=str(i)))).value == str(i)
            stable = stable + 1 if sent == last else 0
            last = sent
            if stable >= 5:
                break
        assert not task.done()
        # At most the 4 MiB stream window plus the writer's queue is in flight.
        assert sent <= 6, sent
        release.set()
        await asyncio.wait_for(task, 10)
        assert (await stream.recv_message()).value == b"done"
        assert await stream.recv_message() is None
    assert received == [MiB] * total


async def test_client_not_reading_blocks_only_its_handler(start_server: Any, make_channel: Any) -> None:
    """Server→client direction: a handler sending to a client that does not read blocks in send_message."""
    progress: list[int] = []
    finished = asyncio.Event()

    async def handler(stream: Any) -> None:
        await stream.recv_message()
        for i in range(16):
            await stream.send_message(BV(value=b"q" * MiB))
            progress.append(i)
        finished.set()

    server = await start_server(
        [Service("core.Push", M=(handler, SS, BV, BV)), echo_service()],
        config=Configuration(max_receive_message_length=2 * MiB),
    )
    channel = make_channel(server.port, config=Configuration(max_receive_message_length=2 * MiB))
    echo = UnaryUnaryMethod(channel, "/core.Echo/Unary", SV, SV)
    async with channel.request("/core.Push/M", SS, BV, BV) as stream:
        await stream.send_message(BV(value=b""), end=True)
        last, stable = -1, 0
        for i in range(200):
            assert (await echo(SV(value=str(i)))).value == str(i)
            stable = stable + 1 if len(progress) == last else 0
            last = len(progress)
            if stable >= 5:
                break
        assert not finished.is_set()
        assert len(progress) <= 6, progress
        got = [reply async for reply in stream]
    assert len(got) == 16
    assert finished.is_set()


async def test_send_limits_both_sides(start_server: Any, make_channel: Any) -> None:
    """max_send_message_length: the server's handler and our client both refuse to send
    an oversized message (RESOURCE_EXHAUSTED) and nothing of it goes on the wire."""

    async def big_reply(stream: Any) -> None:
        await stream.recv_message()
        await stream.send_message(BV(value=b"r" * 2000))

    server = await start_server(
        [Service("core.T", M=(big_reply, UU, BV, BV)), echo_service()],
        config=Configuration(max_send_message_length=1000),
    )
    channel = make_channel(server.port, config=Configuration(max_send_message_length=1000))
    with pytest.raises(GRPCError) as info:
        await UnaryUnaryMethod(channel, "/core.T/M", BV, BV)(BV())
    assert info.value.status is Status.RESOURCE_EXHAUSTED
    assert "larger than max" in (info.value.message or "")
    echo = UnaryUnaryMethod(channel, "/core.Echo/Bytes", BV, BV)
    with pytest.raises(GRPCError) as info:
        await echo(BV(value=b"s" * 2000))
    assert info.value.status is Status.RESOURCE_EXHAUSTED
    assert (await echo(BV(value=b"small"))).value == b"small"
