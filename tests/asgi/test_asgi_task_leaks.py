"""No task outlives its call in the ASGI adapter, however the call ends.

A Hypercorn process serves ``asgi_reliability_app:app``; ``Diag/State``
reports the process's asyncio tasks (all of them, the adapter's reader
tasks, the call tasks). After a few hundred calls that end by deadline,
client cancellation, reset, dropped connection, error status, oversized
message, unknown method and refused request, and once their connections are
closed, the count is back to the baseline measured before them.
"""

from __future__ import annotations

import asyncio
from typing import Any, Iterator

import pytest

from asgi_procs import ServerProcess
from asgi_reliability_support import RawClient, S, channel, diag, frame, running  # noqa: F401  (channel: fixture)
from grpcasgi import Cardinality, Configuration, GRPCError, Status
from grpcasgi.client import Channel
from google.protobuf.empty_pb2 import Empty

ECHO = "/test.asgi.Echo/"
DIAG = "/test.asgi.Diag/"


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    with running() as proc:
        yield proc


async def expect_status(status: Status, call: Any) -> None:
    with pytest.raises(GRPCError) as info:
        await call
    assert info.value.status is status, info.value


async def unary(ch: Channel, path: str, request: Any, reply_type: Any, **kwargs: Any) -> Any:
    async with ch.request(path, Cardinality.UNARY_UNARY, type(request), reply_type, **kwargs) as stream:
        await stream.send_message(request, end=True)
        reply = await stream.recv_message()
        await stream.recv_trailing_metadata()
        return reply


async def cancelled_after_headers(ch: Channel, path: str) -> None:
    async with ch.request(path, Cardinality.UNARY_UNARY, S, S, timeout=10) as stream:
        await stream.send_message(S(value="cancel-me"), end=True)
        await stream.recv_initial_metadata()  # the handler is running
        await stream.cancel()


async def bidi_reset_mid_stream(ch: Channel) -> None:
    async with ch.request(DIAG + "Hold", Cardinality.STREAM_STREAM, S, S, timeout=10) as stream:
        await stream.send_message(S(value="a"))
        await stream.recv_message()
        await stream.cancel()


async def flood_then_cancel(ch: Channel) -> None:
    """A handler that never reads, sent more than the adapter buffers per call."""
    async with ch.request(ECHO + "NoRead", Cardinality.STREAM_UNARY, Empty, Empty, timeout=10) as stream:
        await stream.send_request()
        await stream.recv_initial_metadata()
        for _ in range(20):
            await stream.send_message(Empty())
        await stream.cancel()


async def dropped_connection(port: int) -> None:
    """A Hold call with half a message sent, then the TCP connection dropped."""
    raw = await RawClient.connect(port)
    try:
        sid = raw.request(DIAG + "Hold", frame(S(value="a").SerializeToString()), end=False)
        await raw.read_until(lambda: len(raw.responses[sid].data) > 5)
        raw.send_data(sid, frame(S(value="b" * 100).SerializeToString())[:20])
        await raw.writer.drain()
    finally:
        raw.abort()


async def instant_resets(port: int, n: int) -> None:
    """Requests reset by the client right after their HEADERS (in the same write)."""
    raw = await RawClient.connect(port)
    try:
        for _ in range(n):
            sid = raw.request(ECHO + "Sleep", b"", end=False)
            raw.conn.reset_stream(sid, error_code=0x8)
        raw.flush()
        sid = raw.request(ECHO + "Unary", frame(S(value="after").SerializeToString()))
        assert (await raw.response(sid)).grpc_status == 0
    finally:
        await raw.close()


async def test_no_task_outlives_its_call(server: ServerProcess, channel: Channel) -> None:
    port = server.ports["http"]
    baseline = await diag(channel)
    work = Channel("127.0.0.1", port, config=Configuration(max_receive_message_length=4 * 1024 * 1024))
    try:
        for _ in range(2):
            await asyncio.gather(
                *(expect_status(Status.DEADLINE_EXCEEDED, unary(work, ECHO + "Sleep", S(value="d"), Empty, timeout=0.05)) for _ in range(20)),
                *(cancelled_after_headers(work, DIAG + "Linger") for _ in range(20)),
                *(bidi_reset_mid_stream(work) for _ in range(10)),
                *(flood_then_cancel(work) for _ in range(5)),
                *(expect_status(Status.FAILED_PRECONDITION, unary(work, ECHO + "Fail", Empty(), Empty)) for _ in range(10)),
                *(expect_status(Status.UNIMPLEMENTED, unary(work, ECHO + "Missing", S(), S)) for _ in range(10)),
                *(expect_status(Status.RESOURCE_EXHAUSTED, unary(work, ECHO + "Unary", S(value="x" * (1024 * 1024 + 1)), S)) for _ in range(3)),
                *(dropped_connection(port) for _ in range(5)),
                instant_resets(port, 50),
            )
            during = await diag(channel)
            assert during["tasks"] > baseline["tasks"]  # the work channel's connection is still open
        assert (await unary(work, ECHO + "Unary", S(value="ok"), S)).value == "ok|-|asgi"
    finally:
        work.close()

    after = await diag(channel, tasks_at_most=baseline["tasks"])
    counts = ("tasks", "readers", "calls")
    assert [after[k] for k in counts] == [baseline[k] for k in counts], (baseline, after)
    assert after["holds"]["cancelled"] == 2 * (10 + 5)
