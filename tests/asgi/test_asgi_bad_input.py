"""Bad input through a real Hypercorn process to ``grpcasgi.asgi.App``.

Each case asserts what the bundled server's ``tests/core/test_bad_input.py``
asserts: a clear gRPC status, a log line from grpcasgi saying why, no crash
(no traceback in the server's log), and another call on the same HTTP/2
connection still served. The adapter-specific cases also check, through the
app's ``Diag/State`` RPC, that the call's reader task ended and that the
server's memory stayed bounded while a client kept sending.
"""

from __future__ import annotations

import asyncio
import gzip
from typing import Any, AsyncIterator, Iterator

import pytest

from asgi_procs import ServerProcess
from asgi_reliability_support import RawClient, S, channel, diag, frame, logged, running  # noqa: F401  (channel: fixture)
from core_helpers import BAD_MESSAGE_CASES, bad_header_cases
from grpcasgi import Cardinality, Configuration, GRPCError, Status
from grpcasgi.client import Channel

UNARY = "/test.asgi.Echo/Unary"
MiB = 1024 * 1024
LIMIT = 1 * MiB  # the app's max_receive_message_length


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with running() as proc:
        yield proc


@pytest.fixture
async def raw(server: ServerProcess) -> AsyncIterator[RawClient]:
    client = await RawClient.connect(server.ports["http"])
    yield client
    await client.close()


async def still_serves(raw: RawClient, text: str = "still fine") -> None:
    sid = raw.request(UNARY, frame(S(value=text).SerializeToString()))
    resp = await raw.response(sid)
    assert resp.grpc_status == 0, resp
    assert S.FromString(resp.data[5:]).value == f"{text}|-|asgi"


async def unary_roundtrip(ch: Channel, text: str = "hello") -> None:
    async with ch.request(UNARY, Cardinality.UNARY_UNARY, S, S, timeout=5) as call:
        await call.send_message(S(value=text), end=True)
        assert (await call.recv_message()).value == f"{text}|-|asgi"
        await call.recv_trailing_metadata()


async def quiet(ch: Channel, baseline: dict[str, Any]) -> dict[str, Any]:
    """The server's state once its task count is back to ``baseline``'s (5 s at most)."""
    return await diag(ch, tasks_at_most=baseline["tasks"])


# (id, header overrides, body, status, text in grpc-message, text in the log line)
# The bundled server's cases (tests/core/test_bad_input.py), plus the limits of this app.
CASES = [
    *BAD_MESSAGE_CASES,
    ("prefix-over-limit", {}, b"\x00" + (LIMIT + 1).to_bytes(4, "big"), Status.RESOURCE_EXHAUSTED, "larger than max", "larger than max"),
    ("prefix-4gib", {}, b"\x00\xff\xff\xff\xff", Status.RESOURCE_EXHAUSTED, "larger than max", "larger than max"),
    (
        "gzip-bomb",
        {"grpc_encoding": "gzip"},
        frame(gzip.compress(b"\0" * (16 * MiB)), compressed=True),
        Status.RESOURCE_EXHAUSTED,
        "larger than",
        "larger than",
    ),
    *bad_header_cases(frame(S(value="x").SerializeToString())),
]


@pytest.mark.parametrize("headers, body, status, message, log_text", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_bad_request_gets_a_status_and_a_log_line(
    server: ServerProcess,
    raw: RawClient,
    headers: dict[str, str],
    body: bytes,
    status: Status,
    message: str,
    log_text: str,
) -> None:
    mark = len(server.lines)
    sid = raw.request(UNARY, body, **headers)
    resp = await raw.response(sid)
    assert resp.http_status == 200
    assert resp.grpc_status == status.value, resp
    assert message.lower() in resp.grpc_message.lower(), resp
    line = await logged(server, mark, log_text)
    assert " grpcasgi." in line, line
    await still_serves(raw)


# -- what only the ASGI adapter can get wrong ---------------------------------------------


async def test_oversized_message_stops_buffering(server: ServerProcess, raw: RawClient, channel: Channel) -> None:
    """RESOURCE_EXHAUSTED as soon as the length prefix arrives, the call's reader
    task ends, and a client that keeps sending gets no more stream credit
    (what its window still allows is acknowledged and dropped), while the
    connection window is still credited: other calls on it carry on."""
    await still_serves(raw)  # Hypercorn's keep-alive timer tasks exist from the first call's end
    before = await diag(channel, collect=True)
    mark = len(server.lines)
    sid = raw.request(UNARY, b"\x00" + (64 * MiB).to_bytes(4, "big") + b"\x01" * 16000, end=False)
    resp = await raw.response(sid)
    assert resp.grpc_status == Status.RESOURCE_EXHAUSTED.value, resp
    assert "larger than max" in resp.grpc_message
    assert " grpcasgi." in await logged(server, mark, "larger than max")
    after_status = await quiet(channel, before)
    assert (after_status["readers"], after_status["calls"]) == (before["readers"], before["calls"])

    # The client keeps going with all the window it has left...
    while raw.window(sid) > 0:
        raw.send_data(sid, b"\x07" * min(raw.window(sid), 16384))
    # The server gives the connection window back (what it dropped frees
    # nothing else), so other calls can still send...
    await raw.read_until(lambda: raw.conn.outbound_flow_control_window >= 16384)
    await still_serves(raw)  # ...and it processed all the data before answering this call
    # But the finished call cannot send more: no credit, or (once Hypercorn's
    # h2 state has closed the stream) RST_STREAM(STREAM_CLOSED).
    assert resp.reset == 0x5 or raw.window(sid) == 0, resp
    await still_serves(raw, "and again")
    after = await quiet(channel, before)
    assert (after["tasks"], after["readers"]) == (before["tasks"], before["readers"]), (await diag(channel, names=True))["names"]
    assert after["rss"] - before["rss"] < 4 * MiB, (before, after)


async def test_abrupt_disconnect_mid_stream_cancels_the_handler(server: ServerProcess, channel: Channel) -> None:
    """A client that drops the TCP connection with half a message sent: the
    handler is cancelled and neither its reader task nor its call task stays."""
    before = await diag(channel)
    raw = await RawClient.connect(server.ports["http"])
    try:
        sid = raw.request("/test.asgi.Diag/Hold", frame(S(value="a").SerializeToString()), end=False)
        await raw.read_until(lambda: len(raw.responses[sid].data) > 5)  # "held:a": the handler waits for more
        raw.send_data(sid, frame(S(value="half a message").SerializeToString())[:9])
        await raw.writer.drain()
    finally:
        raw.abort()
    after = await quiet(channel, before)
    assert after["holds"]["cancelled"] == before["holds"]["cancelled"] + 1
    assert after["holds"]["finished"] == before["holds"]["finished"]
    assert (after["tasks"], after["readers"], after["calls"]) == (before["tasks"], before["readers"], before["calls"])


async def test_client_that_never_reads_a_large_server_stream(server: ServerProcess, raw: RawClient, channel: Channel) -> None:
    """The handler blocks in send() once the stream's window and Hypercorn's
    buffer are full (back-pressure, no unbounded queue), while other calls on
    the same connection are served; a reset then ends it without a leak."""
    await still_serves(raw)
    before = await diag(channel)
    sid = raw.request("/test.asgi.Diag/Flood", frame(S(value="never-read").SerializeToString()))
    raw.uncredited.add(sid)  # the connection window is still given back
    await raw.read_until(lambda: raw.window(sid) <= 0 or raw.received.get(sid, 0) >= 65535)
    blocked = (await diag(channel))["floods"]["never-read"]
    assert blocked <= 3, blocked  # 64 KiB messages: one stream window plus Hypercorn's 32 KiB buffer
    await still_serves(raw)
    await still_serves(raw, "and again")
    assert (await diag(channel))["floods"]["never-read"] == blocked  # no progress without reading
    raw.conn.reset_stream(sid, error_code=0x8)
    raw.flush()
    # (Hypercorn restarts a connection's keep-alive timer when a call ends
    # normally, not after a reset: this call puts it back as in the baseline.)
    await still_serves(raw)
    after = await quiet(channel, before)
    assert (after["tasks"], after["readers"], after["calls"]) == (before["tasks"], before["readers"], before["calls"])


async def test_channel_that_never_reads_a_server_stream_does_not_stall_its_other_calls(channel: Channel) -> None:
    """The same with our client: it credits the connection window on arrival,
    so the unread stream stalls only itself once its stream window is full."""
    async with channel.request("/test.asgi.Diag/Flood", Cardinality.UNARY_STREAM, S, S, timeout=20) as flood:
        await flood.send_message(S(value="channel-never-read"), end=True)
        await flood.recv_initial_metadata()
        for text in ("one", "two", "three"):
            await unary_roundtrip(channel, text)
        # The flood fills our client's stream window (4 MiB: 63 messages of 64 KiB
        # and a bit) and stalls there.
        window_full = Configuration().http2_stream_window_size // (65536 + 5)
        loop = asyncio.get_running_loop()
        end = loop.time() + 5
        while (sent := (await diag(channel))["floods"]["channel-never-read"]) < window_full and loop.time() < end:
            await asyncio.sleep(0.02)
        assert window_full <= sent <= window_full + 2, sent
        await unary_roundtrip(channel)
        assert (await diag(channel))["floods"]["channel-never-read"] == sent
        await flood.cancel()
