"""Deadlines and cancellation across the wire, in both directions and with grpcio peers.

Each test observes the handler side through an ``asyncio.Event`` set in the
handler's ``except CancelledError``, so "the handler was cancelled" is asserted,
not assumed.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from core_helpers import SS, SV, US, UU, Service, echo_service, frame, grpc_request_headers
from grpcasgi.client import UnaryUnaryMethod
from grpcasgi.exceptions import GRPCError
from grpcasgi.protocol.status import Status


def _blocking_service(cancelled: asyncio.Event, started: asyncio.Event | None = None) -> Service:
    """core.Slow/M (unary) and core.Slow/S (bidi): wait forever; record cancellation."""

    async def handler(stream: Any) -> None:
        try:
            await stream.recv_message()
            if started is not None:
                started.set()
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    return Service("core.Slow", M=(handler, UU), S=(handler, SS))


async def test_timeout_cancels_handler_and_client_sees_deadline_exceeded(
    start_server: Any, client_call: Any
) -> None:
    cancelled = asyncio.Event()
    server = await start_server([_blocking_service(cancelled)])
    t0 = time.monotonic()
    out = await client_call(server, "/core.Slow/M", UU, [SV(value="x")], timeout=0.2)
    elapsed = time.monotonic() - t0
    assert out.status == Status.DEADLINE_EXCEEDED.value, out
    assert 0.15 < elapsed < 3
    await asyncio.wait_for(cancelled.wait(), 3)


async def test_server_enforces_deadline_itself(start_server: Any) -> None:
    """Without any client-side timer (raw h2), the server ends the call DEADLINE_EXCEEDED."""
    cancelled = asyncio.Event()
    slow = await start_server([_blocking_service(cancelled)])
    from core_helpers import RawH2

    raw = await RawH2.connect(slow.port)
    try:
        sid = raw.request(grpc_request_headers("/core.Slow/M", grpc_timeout="150m"), frame(b""))
        resp = await raw.response(sid, timeout=3)
        assert resp.grpc_status == Status.DEADLINE_EXCEEDED.value
        assert cancelled.is_set()
    finally:
        await raw.close()


async def test_stream_deadline_reflects_grpc_timeout(start_server: Any) -> None:
    seen: list[float] = []

    async def handler(stream: Any) -> None:
        seen.append(stream.deadline.time_remaining())
        await stream.send_message(SV(value=""))

    server = await start_server([Service("core.T", M=(handler, UU))])
    from core_helpers import RawH2

    raw = await RawH2.connect(server.port)
    try:
        for value, expected in [("1500m", 1.5), ("2S", 2.0), ("1M", 60.0), ("3000000u", 3.0)]:
            sid = raw.request(grpc_request_headers("/core.T/M", grpc_timeout=value), frame(b""))
            assert (await raw.response(sid)).grpc_status == 0
            assert expected - 0.5 < seen[-1] <= expected, value
    finally:
        await raw.close()


async def test_our_client_against_grpcio_server_deadline(grpcio_server: Any, make_channel: Any) -> None:
    cancelled = asyncio.Event()

    async def slow(request: Any, context: Any) -> Any:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return SV(value="late")  # pragma: no cover

    port = await grpcio_server("core.G", {"M": (UU, slow)})
    method = UnaryUnaryMethod(make_channel(port), "/core.G/M", SV, SV)
    t0 = time.monotonic()
    with pytest.raises(GRPCError) as info:
        await method(SV(value="x"), timeout=0.2)
    assert info.value.status is Status.DEADLINE_EXCEEDED
    assert time.monotonic() - t0 < 3
    await asyncio.wait_for(cancelled.wait(), 3)


async def test_client_deadline_fires_when_server_is_silent(make_channel: Any) -> None:
    """A server that accepts but never answers cannot hold a call past its deadline."""
    accepted: list[asyncio.StreamWriter] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    silent = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        method = UnaryUnaryMethod(make_channel(port), "/core.T/M", SV, SV)
        t0 = time.monotonic()
        with pytest.raises(GRPCError) as info:
            await method(SV(value="x"), timeout=0.2)
        assert info.value.status is Status.DEADLINE_EXCEEDED
        assert time.monotonic() - t0 < 3
    finally:
        for w in accepted:
            w.close()
        silent.close()
        await silent.wait_closed()


async def test_expired_deadline_fails_before_sending(server: Any, channel: Any) -> None:
    from grpcasgi.deadline import Deadline

    method = UnaryUnaryMethod(channel, "/core.Echo/Unary", SV, SV)
    with pytest.raises(GRPCError) as info:
        await method(SV(value="x"), deadline=Deadline.from_timeout(-1))
    assert info.value.status is Status.DEADLINE_EXCEEDED
    assert (await method(SV(value="ok"))).value == "ok"


@pytest.mark.parametrize("kind", ["ours", "grpcio"])
async def test_client_cancel_cancels_handler(start_server: Any, make_channel: Any, kind: str) -> None:
    cancelled, started = asyncio.Event(), asyncio.Event()
    server = await start_server([_blocking_service(cancelled, started), echo_service()])
    if kind == "ours":
        channel = make_channel(server.port)
        async with channel.request("/core.Slow/S", SS, SV, SV) as stream:
            await stream.send_message(SV(value="x"))
            await asyncio.wait_for(started.wait(), 3)
            await stream.cancel()
            with pytest.raises(GRPCError) as info:
                await stream.recv_message()
            assert info.value.status is Status.CANCELLED
        await asyncio.wait_for(cancelled.wait(), 3)
        # The connection is still good for the next call.
        assert (await UnaryUnaryMethod(channel, "/core.Echo/Unary", SV, SV)(SV(value="ok"))).value == "ok"
    else:
        import grpc

        from core_helpers import grpcio_method

        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
            call = grpcio_method(ch, "/core.Slow/S", SS)()
            await call.write(SV(value="x"))
            await asyncio.wait_for(started.wait(), 3)
            call.cancel()
            await asyncio.wait_for(cancelled.wait(), 3)
            assert await call.code() == grpc.StatusCode.CANCELLED


async def test_leaving_async_with_early_cancels_handler(start_server: Any, make_channel: Any) -> None:
    """An exception inside ``async with channel.request(...)`` resets the call."""
    cancelled, started = asyncio.Event(), asyncio.Event()
    server = await start_server([_blocking_service(cancelled, started)])
    channel = make_channel(server.port)
    with pytest.raises(KeyError):
        async with channel.request("/core.Slow/S", SS, SV, SV) as stream:
            await stream.send_message(SV(value="x"))
            await asyncio.wait_for(started.wait(), 3)
            raise KeyError("user code failed")
    await asyncio.wait_for(cancelled.wait(), 3)


async def test_cancelling_the_caller_task_cancels_handler(start_server: Any, make_channel: Any) -> None:
    """asyncio-cancelling the task awaiting a call resets the HTTP/2 stream."""
    cancelled, started = asyncio.Event(), asyncio.Event()
    server = await start_server([_blocking_service(cancelled, started)])
    method = UnaryUnaryMethod(make_channel(server.port), "/core.Slow/M", SV, SV)
    task = asyncio.ensure_future(method(SV(value="x")))
    await asyncio.wait_for(started.wait(), 3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(cancelled.wait(), 3)


async def test_server_cancel_is_cancelled_on_client(start_server: Any, client_call: Any) -> None:
    async def handler(stream: Any) -> None:
        await stream.recv_message()
        await stream.send_message(SV(value="1"))
        await stream.cancel()

    server = await start_server([Service("core.T", M=(handler, US))])
    out = await client_call(server, "/core.T/M", US, [SV(value="x")])
    assert out.status == Status.CANCELLED.value


async def test_deadline_covers_waiting_for_a_stream_slot(start_server: Any, make_channel: Any) -> None:
    """A call queued behind the server's MAX_CONCURRENT_STREAMS still ends at its deadline."""
    from grpcasgi.config import Configuration

    cancelled, started = asyncio.Event(), asyncio.Event()
    server = await start_server([_blocking_service(cancelled, started)], config=Configuration(http2_max_concurrent_streams=1))
    channel = make_channel(server.port)
    method = UnaryUnaryMethod(channel, "/core.Slow/M", SV, SV)
    first = asyncio.ensure_future(method(SV(value="holds the only slot")))
    await asyncio.wait_for(started.wait(), 3)
    t0 = time.monotonic()
    with pytest.raises(GRPCError) as info:
        await method(SV(value="queued"), timeout=0.2)
    assert info.value.status is Status.DEADLINE_EXCEEDED
    assert time.monotonic() - t0 < 3
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_deadline_covers_connecting(make_channel: Any) -> None:
    """A connect that hangs (listen backlog full: SYNs dropped) ends at the deadline."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            try:
                filler.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            fillers.append(filler)
        method = UnaryUnaryMethod(make_channel(port), "/core.T/M", SV, SV)
        t0 = time.monotonic()
        with pytest.raises(GRPCError) as info:
            await method(SV(value="x"), timeout=0.3)
        assert info.value.status is Status.DEADLINE_EXCEEDED
        assert time.monotonic() - t0 < 3
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def test_grpc_timeout_header_counts_time_spent_connecting(start_server: Any, make_channel: Any) -> None:
    """The deadline the server sees is the client's, not the client's plus connection setup."""
    seen: list[float] = []

    async def handler(stream: Any) -> None:
        seen.append(stream.deadline.time_remaining())
        await stream.send_message(SV(value=""))

    server = await start_server([Service("core.T", M=(handler, UU))])
    method = UnaryUnaryMethod(make_channel(server.port), "/core.T/M", SV, SV)
    from grpcasgi.deadline import Deadline

    deadline = Deadline.from_timeout(5)
    await method(SV(), deadline=deadline)
    assert seen[0] <= deadline.time_remaining() + 0.05


async def test_client_cancel_while_handler_blocked_sending(start_server: Any, make_channel: Any) -> None:
    """A handler stuck in send_message (client not reading, window full) is cancelled by the client's reset."""
    from core_helpers import BV
    from grpcasgi.config import Configuration

    cancelled, sending = asyncio.Event(), asyncio.Event()

    async def handler(stream: Any) -> None:
        await stream.recv_message()
        try:
            for _ in range(64):
                sending.set()
                await stream.send_message(BV(value=b"x" * 1024 * 1024))
        except asyncio.CancelledError:
            cancelled.set()
            raise

    config = Configuration(max_receive_message_length=2 * 1024 * 1024)
    server = await start_server([Service("core.T", M=(handler, US, BV, BV))], config=config)
    channel = make_channel(server.port, config=config)
    async with channel.request("/core.T/M", US, BV, BV) as stream:
        await stream.send_message(BV(), end=True)
        assert await stream.recv_message() is not None
        await asyncio.wait_for(sending.wait(), 3)
        await stream.cancel()
    await asyncio.wait_for(cancelled.wait(), 3)


async def test_outgoing_call_inherits_the_handler_deadline(start_server: Any, make_channel: Any) -> None:
    """A handler calling another service passes on what is left of its own deadline."""
    seen: list[float | None] = []

    async def backend(stream: Any) -> None:
        await stream.recv_message()
        seen.append(stream.deadline.time_remaining() if stream.deadline else None)
        await stream.send_message(SV(value="backend"))

    backend_server = await start_server([Service("core.B", M=(backend, UU))])
    backend_channel = make_channel(backend_server.port)

    async def frontend(stream: Any) -> None:
        await stream.recv_message()
        reply = await UnaryUnaryMethod(backend_channel, "/core.B/M", SV, SV)(SV())
        await stream.send_message(reply)

    frontend_server = await start_server([Service("core.F", M=(frontend, UU))])
    method = UnaryUnaryMethod(make_channel(frontend_server.port), "/core.F/M", SV, SV)
    assert (await method(SV(), timeout=5)).value == "backend"
    assert seen[0] is not None and seen[0] <= 5
    assert (await method(SV())).value == "backend"
    assert seen[1] is None


@pytest.mark.parametrize("cleanup", ["raise_grpc_error", "send_message"])
async def test_handler_answering_after_client_cancel_is_not_an_error(
    start_server: Any, make_channel: Any, caplog: pytest.LogCaptureFixture, cleanup: str
) -> None:
    """A handler that answers after its client cancelled (turns CancelledError into a
    GRPCError, or sends a goodbye) is not logged as an application error."""
    import logging

    started, finished = asyncio.Event(), asyncio.Event()

    async def handler(stream: Any) -> None:
        await stream.recv_message()
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            finished.set()
            if cleanup == "raise_grpc_error":
                raise GRPCError(Status.CANCELLED, "client went away")
            await stream.send_message(SV(value="bye"))

    server = await start_server([Service("core.T", M=(handler, SS)), echo_service()])
    channel = make_channel(server.port)
    with caplog.at_level(logging.INFO, logger="grpcasgi"):
        async with channel.request("/core.T/M", SS, SV, SV) as stream:
            await stream.send_message(SV())
            await asyncio.wait_for(started.wait(), 3)
            await stream.cancel()
        await asyncio.wait_for(finished.wait(), 3)
        # The next call on the connection shows the cancelled one was wound up.
        assert (await UnaryUnaryMethod(channel, "/core.Echo/Unary", SV, SV)(SV(value="x"))).value == "x"
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
