"""Graceful shutdown of ``grpcasgi.asgi.App`` under a real Hypercorn process.

Hypercorn runs the ASGI lifespan shutdown only after its connections are
gone; grpcasgi hooks the moment the worker *begins* shutting down (see
``grpcasgi/_hypercorn.py``), so under SIGTERM the app behaves like the
bundled ``Server.close()``: the services' ``__on_close__`` hooks run first
(health watchers hear NOT_SERVING while their connection still works),
clients get GOAWAY, requests arriving anyway are refused with
REFUSED_STREAM (UNAVAILABLE), calls in flight finish, and calls still running
when the grace period ends are cancelled with UNAVAILABLE before Hypercorn
drops the connection. Every test runs its own Hypercorn (``--graceful-timeout
2``, so calls get 1.5 s) and stops it at teardown.
"""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Iterator

import grpc
import grpc.aio
import pytest

from asgi_procs import ServerProcess
from asgi_reliability_support import RawClient, S, channel, frame, logged, start  # noqa: F401  (channel: fixture)
from grpcasgi import Cardinality, GRPCError, Status
from grpcasgi.client import Channel
from grpcasgi.contrib.protos.grpc.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

REFUSED_STREAM = 0x7
WATCH = "/grpc.health.v1.Health/Watch"


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    proc = start()
    try:
        yield proc
    finally:
        proc.stop()


def exit_status(server: ServerProcess) -> int:
    """Wait for the process that got SIGTERM to exit by itself (stop() kills it after 15 s)."""
    return server.stop(sig=0)


def report(server: ServerProcess) -> dict[str, int]:
    """What the app's on_shutdown hook printed (after Hypercorn closed every connection)."""
    lines = [line for line in server.lines if line.startswith("SHUTDOWN-REPORT ")]
    assert len(lines) == 1, server.log
    result: dict[str, int] = json.loads(lines[0].split(" ", 1)[1])
    return result


async def test_sigterm_tells_health_watchers_not_serving_before_connections_close(
    server: ServerProcess, channel: Channel
) -> None:
    """Our client and grpcio (grpc.aio) each watch; both hear NOT_SERVING, then an OK end."""
    gch = grpc.aio.insecure_channel(f"127.0.0.1:{server.ports['http']}")
    try:
        grpcio_watch = gch.unary_stream(
            WATCH,
            request_serializer=HealthCheckRequest.SerializeToString,
            response_deserializer=HealthCheckResponse.FromString,
        )(HealthCheckRequest(), timeout=20)
        assert (await grpcio_watch.read()).status == HealthCheckResponse.SERVING
        async with channel.request(WATCH, Cardinality.UNARY_STREAM, HealthCheckRequest, HealthCheckResponse, timeout=20) as watch:
            await watch.send_message(HealthCheckRequest(), end=True)
            assert (await watch.recv_message()).status == HealthCheckResponse.SERVING
            mark = len(server.lines)
            server.proc.send_signal(signal.SIGTERM)
            # Well within the 2 s graceful_timeout, over the still-open connection:
            update = await asyncio.wait_for(watch.recv_message(), 1.5)
            assert update.status == HealthCheckResponse.NOT_SERVING
            assert await watch.recv_message() is None
            await watch.recv_trailing_metadata()  # an OK end, not a dropped connection
        assert (await asyncio.wait_for(grpcio_watch.read(), 1.5)).status == HealthCheckResponse.NOT_SERVING
        assert await grpcio_watch.read() is grpc.aio.EOF
        assert await grpcio_watch.code() is grpc.StatusCode.OK
    finally:
        await gch.close()
    await logged(server, mark, "grpcasgi.asgi", "Hypercorn is shutting down")
    await logged(server, mark, "grpcasgi.contrib.health", "NOT_SERVING")
    assert exit_status(server) == 0
    assert report(server) == {"entered": 0, "finished": 0, "cancelled": 0}  # the lifespan shutdown still ran
    assert "Traceback" not in server.log, server.log


async def test_sigterm_with_calls_in_flight(server: ServerProcess, channel: Channel) -> None:
    """Calls in flight finish OK, new requests are refused (UNAVAILABLE), a call
    outliving the grace period gets UNAVAILABLE, and no call is lost: the
    handler entries the server counted equal the OK results."""
    port = server.ports["http"]
    watch = channel.request(WATCH, Cardinality.UNARY_STREAM, HealthCheckRequest, HealthCheckResponse, timeout=20)
    holds = [channel.request("/test.asgi.Diag/Hold", Cardinality.STREAM_STREAM, S, S, timeout=20) for _ in range(5)]
    raw = await RawClient.connect(port)
    try:
        async with watch:
            await watch.send_message(HealthCheckRequest(), end=True)
            await watch.recv_message()
            for i, hold in enumerate(holds):
                await hold.__aenter__()
                await hold.send_message(S(value=str(i)))
                assert (await hold.recv_message()).value == f"held:{i}"
            # A second connection, busy with a call that will outlive the grace period.
            sleeper = raw.request("/test.asgi.Echo/Sleep", frame(S(value="past-grace").SerializeToString()))
            await raw.read_until(lambda: bool(raw.responses[sleeper].headers))

            mark = len(server.lines)
            server.proc.send_signal(signal.SIGTERM)
            assert (await asyncio.wait_for(watch.recv_message(), 1.5)).status == HealthCheckResponse.NOT_SERVING

        # Every connection hears GOAWAY naming the last stream the server took.
        await raw.read_until(lambda: bool(raw.goaways), 1.5)
        assert raw.goaways[0].error_code == 0 and raw.goaways[0].last_stream_id == sleeper
        # A request sent anyway is refused, never run: REFUSED_STREAM, which clients report as UNAVAILABLE.
        late = raw.request("/test.asgi.Echo/Unary", frame(S(value="late").SerializeToString()))
        assert (await raw.response(late, 1.5)).reset == REFUSED_STREAM

        # The calls in flight finish normally.
        ok = 0
        for i, hold in enumerate(holds):
            await hold.send_message(S(value=f"r{i}"), end=True)
            assert (await hold.recv_message()).value == f"done:r{i}"
            assert await hold.recv_message() is None
            await hold.recv_trailing_metadata()
            ok += 1
            await hold.__aexit__(None, None, None)

        # The call still running when the grace period (1.5 s) ends gets UNAVAILABLE.
        resp = await raw.response(sleeper, 3)
        assert resp.grpc_status == Status.UNAVAILABLE.value, resp
        assert resp.grpc_message == "Server is shutting down"
        await logged(server, mark, "grpcasgi.asgi", "cancelling 1 call(s) still running")

        # The channel saw GOAWAY: a new call needs a new connection, which the
        # draining worker never accepts; it fails UNAVAILABLE once it exits.
        with pytest.raises(GRPCError) as info:
            async with channel.request("/test.asgi.Echo/Unary", Cardinality.UNARY_UNARY, S, S, timeout=10) as late_call:
                await late_call.send_message(S(value="late"), end=True)
                await late_call.recv_message()
        assert info.value.status is Status.UNAVAILABLE
    finally:
        await raw.close()

    assert exit_status(server) == 0
    assert report(server) == {"entered": 5, "finished": 5, "cancelled": 0}
    assert ok == 5
    assert "Traceback" not in server.log, server.log


async def test_sigterm_cancels_a_call_that_outlives_the_grace(server: ServerProcess, channel: Channel) -> None:
    """With our client: UNAVAILABLE after the grace period, and the handler saw its cancellation."""
    mark = len(server.lines)
    async with channel.request("/test.asgi.Diag/Linger", Cardinality.UNARY_UNARY, S, S, timeout=20) as call:
        await call.send_message(S(value="k"), end=True)
        await call.recv_initial_metadata()
        loop = asyncio.get_running_loop()
        began = loop.time()
        server.proc.send_signal(signal.SIGTERM)
        with pytest.raises(GRPCError) as info:
            await call.recv_message()
        waited = loop.time() - began
    assert info.value.status is Status.UNAVAILABLE and info.value.message == "Server is shutting down"
    assert 1.0 < waited < 2.0  # graceful_timeout 2 s minus the margin for the status to get out
    await logged(server, mark, "Linger k: cancelled")
    assert exit_status(server) == 0
    assert "Traceback" not in server.log, server.log


async def test_with_workers_0_new_connections_are_refused_at_once() -> None:
    """``--workers 0`` serves in Hypercorn's main process, which closes the
    listening socket when it begins shutting down: a new call fails
    UNAVAILABLE at once instead of waiting in the listen queue of a parent
    process until the worker exits (the default, one worker process)."""
    server = start("--workers", "0")
    ch = Channel("127.0.0.1", server.ports["http"])
    try:
        async with ch.request(WATCH, Cardinality.UNARY_STREAM, HealthCheckRequest, HealthCheckResponse, timeout=20) as watch:
            await watch.send_message(HealthCheckRequest(), end=True)
            await watch.recv_message()
            server.proc.send_signal(signal.SIGTERM)
            assert (await asyncio.wait_for(watch.recv_message(), 1.5)).status == HealthCheckResponse.NOT_SERVING
            assert await watch.recv_message() is None
        with pytest.raises(GRPCError) as info:
            async with ch.request("/test.asgi.Echo/Unary", Cardinality.UNARY_UNARY, S, S, timeout=10) as late_call:
                await asyncio.wait_for(late_call.send_message(S(value="late"), end=True), 1)
                await asyncio.wait_for(late_call.recv_message(), 1)
        assert info.value.status is Status.UNAVAILABLE, info.value
        assert exit_status(server) == 0
    finally:
        ch.close()
        server.stop()
    assert "Traceback" not in server.log, server.log
