"""Graceful shutdown: the two-step GOAWAY on the wire, health first, no call
lost under load, and wait_closed() returning whatever the handlers do."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

import pytest
from hostile_support import BV, NO_ERROR, REFUSED_STREAM, SV, grpc_frame, peer, request_headers
from hyperframe.frame import DataFrame, PingFrame

from grpcasgi.client import Channel, UnaryUnaryMethod
from grpcasgi.config import Configuration
from grpcasgi.const import Cardinality, Handler
from grpcasgi.contrib.health import Health
from grpcasgi.contrib.protos.grpc.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from grpcasgi.exceptions import GRPCError
from grpcasgi.protocol.status import Status
from grpcasgi.server import STOP_TIMEOUT, Server
from grpcasgi.transport.lifecycle import DRAIN_PING

MAX_STREAM_ID = 2**31 - 1


def ended(raw: Any, sid: int) -> bool:
    return any("END_STREAM" in f.flags for f in raw.headers_of(sid))


async def test_two_step_goaway_serves_streams_sent_before_the_client_knew(serve: Any) -> None:
    server, echo = await serve(shutdown_grace=5)
    async with peer(server.port) as raw:
        raw.handshake()
        running = raw.call(path="/h.Echo/Hang")
        await raw.read_until(lambda: echo.running == 1 or raw.eof)
        server.close()
        closed = asyncio.ensure_future(server.wait_closed())
        first = await raw.goaway()
        assert (first.error_code, first.last_stream_id) == (NO_ERROR, MAX_STREAM_ID)
        await raw.read_until(lambda: any(isinstance(f, PingFrame) and f.opaque_data == DRAIN_PING for f in raw.frames))
        # A request in flight when the first GOAWAY went out is still served.
        in_flight = raw.call("late but fine")
        await raw.read_until(lambda: ended(raw, in_flight))
        assert not raw.resets(in_flight)
        raw.ping(DRAIN_PING, ack=True)
        await raw.read_until(lambda: len(raw.goaways()) == 2)
        assert raw.goaways()[1].last_stream_id == in_flight
        # After the final GOAWAY: refused, never run.
        entered = echo.entered
        refused = raw.call("too late")
        await raw.read_until(lambda: bool(raw.resets(refused)))
        assert raw.resets(refused)[0].error_code == REFUSED_STREAM
        assert echo.entered == entered
        assert not closed.done()  # the running call has its grace period
        raw.reset(running)
        await raw.until_closed()
        await asyncio.wait_for(closed, 5)


async def test_final_goaway_without_ping_ack(serve: Any) -> None:
    server, _ = await serve(shutdown_grace=5)
    async with peer(server.port) as raw:
        raw.handshake()
        sid = raw.call()
        await raw.read_until(lambda: ended(raw, sid))
        server.close()
        await raw.until_closed(timeout=10)  # never ACKs the PING: the final GOAWAY comes anyway
        assert [g.last_stream_id for g in raw.goaways()] == [MAX_STREAM_ID, sid]
        await asyncio.wait_for(server.wait_closed(), 5)


async def test_wait_closed_returns_when_a_handler_never_ends(caplog: pytest.LogCaptureFixture) -> None:
    stop = False
    wake = asyncio.Event()
    started = asyncio.Event()

    async def stubborn(stream: Any) -> None:
        started.set()
        while not stop:
            try:
                await wake.wait()
            except asyncio.CancelledError:
                continue  # ignores cancellation: a bug, but it must not hang shutdown

    class Svc:
        def __mapping__(self) -> dict[str, Handler]:
            return {"/h.S/Stubborn": Handler(stubborn, Cardinality.UNARY_UNARY, SV, SV)}

    server = Server([Svc()], config=Configuration(shutdown_grace=0.1))
    await server.start("127.0.0.1", 0)
    async with Channel("127.0.0.1", server.port) as channel:
        call = asyncio.ensure_future(UnaryUnaryMethod(channel, "/h.S/Stubborn", SV, SV)(SV()))
        await asyncio.wait_for(started.wait(), 5)
        caplog.set_level(logging.ERROR, logger="grpcasgi.server")
        loop = asyncio.get_running_loop()
        begin = loop.time()
        server.close()
        await asyncio.wait_for(server.wait_closed(), STOP_TIMEOUT + 5)
        assert loop.time() - begin < STOP_TIMEOUT + 2
        with pytest.raises(GRPCError) as info:
            await asyncio.wait_for(call, 5)
        assert info.value.status is Status.UNAVAILABLE
    assert any("did not end after cancellation" in r.getMessage() for r in caplog.records)
    stop = True
    wake.set()
    await asyncio.sleep(0)


async def test_no_call_lost_under_load_during_shutdown() -> None:
    """Every call either completed OK or failed UNAVAILABLE before its handler ran."""
    entered = 0
    finished = 0

    async def work(stream: Any) -> None:
        nonlocal entered, finished
        req = await stream.recv_message()
        entered += 1
        await asyncio.sleep(0.005)  # a little real work, so calls overlap the shutdown
        await stream.send_message(SV(value=req.value))
        finished += 1

    class Svc:
        def __mapping__(self) -> dict[str, Handler]:
            return {"/h.L/Work": Handler(work, Cardinality.UNARY_UNARY, SV, SV)}

    server = Server([Svc()], config=Configuration(shutdown_grace=10))
    await server.start("127.0.0.1", 0)
    outcomes: Counter[str] = Counter()
    channels = [Channel("127.0.0.1", server.port) for _ in range(4)]
    methods = [UnaryUnaryMethod(ch, "/h.L/Work", SV, SV) for ch in channels]
    halfway = asyncio.Event()

    async def one(i: int) -> None:
        try:
            reply = await methods[i % len(methods)](SV(value=str(i)), timeout=20)
            assert reply.value == str(i)
            outcomes["OK"] += 1
        except GRPCError as exc:
            outcomes[exc.status.name] += 1
        if sum(outcomes.values()) >= 100:
            halfway.set()

    async def load() -> None:
        # Waves of concurrent calls, before, during and after close().
        for wave in range(12):
            await asyncio.gather(*(one(wave * 50 + i) for i in range(50)))

    runner = asyncio.ensure_future(load())
    await asyncio.wait_for(halfway.wait(), 20)
    server.close()
    await asyncio.wait_for(server.wait_closed(), 20)
    await asyncio.wait_for(runner, 30)
    for ch in channels:
        await ch.__aexit__(None, None, None)
    assert set(outcomes) <= {"OK", "UNAVAILABLE"}, outcomes
    assert outcomes["OK"] == entered == finished, (outcomes, entered, finished)
    assert outcomes["OK"] >= 100 and outcomes["UNAVAILABLE"] > 0
    assert sum(outcomes.values()) == 600


async def test_health_reports_not_serving_before_the_goaway() -> None:
    health = Health()
    seen: list[str] = []

    class Probe:
        """Runs its close hook after Health's (hooks run in handler order)."""

        def __mapping__(self) -> dict[str, Handler]:
            return {}

        def __on_close__(self) -> None:
            conns = list(server._state.connections) if server._state else []
            seen.append("goaway already sent" if any(c.lifecycle.draining for c in conns) else "before goaway")

    server = Server([health, Probe()], config=Configuration(shutdown_grace=5))
    await server.start("127.0.0.1", 0)
    async with peer(server.port) as raw:
        raw.handshake()
        watch = raw.open_stream(
            request_headers("/grpc.health.v1.Health/Watch"), body=grpc_frame(HealthCheckRequest().SerializeToString())
        )

        def watch_messages() -> list[int]:
            data = b"".join(f.data for f in raw.frames if isinstance(f, DataFrame) and f.stream_id == watch)
            out, i = [], 0
            while i + 5 <= len(data):
                n = int.from_bytes(data[i + 1 : i + 5], "big")
                out.append(HealthCheckResponse.FromString(data[i + 5 : i + 5 + n]).status)
                i += 5 + n
            return out

        await raw.read_until(lambda: watch_messages() == [HealthCheckResponse.SERVING])
        server.close()
        await raw.goaway()
        # Between the two GOAWAYs the connection still serves: a Check says NOT_SERVING.
        check = raw.open_stream(
            request_headers("/grpc.health.v1.Health/Check"), body=grpc_frame(HealthCheckRequest().SerializeToString())
        )
        await raw.read_until(lambda: ended(raw, check) and ended(raw, watch))
        assert watch_messages() == [HealthCheckResponse.SERVING, HealthCheckResponse.NOT_SERVING]
        data = b"".join(f.data for f in raw.frames if isinstance(f, DataFrame) and f.stream_id == check)
        assert HealthCheckResponse.FromString(data[5:]).status == HealthCheckResponse.NOT_SERVING
        assert len(raw.goaways()) == 1  # all of it before the final GOAWAY
        raw.ping(DRAIN_PING, ack=True)
        await raw.until_closed()
    await asyncio.wait_for(server.wait_closed(), 5)
    assert seen == ["before goaway"]


async def test_streaming_call_finishes_within_grace(serve: Any) -> None:
    server, _ = await serve(shutdown_grace=5)
    async with Channel("127.0.0.1", server.port) as channel:
        async with channel.request("/h.Echo/StreamOut", Cardinality.UNARY_STREAM, SV, BV, timeout=10) as stream:
            await stream.send_message(SV(value="200"), end=True)
            first = await stream.recv_message()  # the handler is running
            server.close()
            rest = [m async for m in stream]
        assert first is not None and len(rest) == 199
        await asyncio.wait_for(server.wait_closed(), 5)
