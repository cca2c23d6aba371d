"""RetryMiddleware over real connections: retried until success, never once committed,
never past the deadline, request replay, grpc-previous-rpc-attempts, throttling."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from client_mw_support import IV, SU, SV, US, UU, Recorder, Service, capture_request_headers
from grpcasgi import GRPCError, Middleware, Status
from grpcasgi.client import StreamUnaryMethod, UnaryStreamMethod, UnaryUnaryMethod
from grpcasgi.middleware.retry import RetryMiddleware, RetryThrottle

FAST = dict(initial_backoff=0.01, max_backoff=0.02, jitter=0.0)


class Flaky:
    """Handlers failing their first ``failures`` attempts with ``status``."""

    def __init__(self, failures: int, status: Status = Status.UNAVAILABLE) -> None:
        self.failures = failures
        self.status = status
        self.attempts = 0
        self.requests: list[Any] = []

    async def unary(self, stream: Any) -> None:
        request = await stream.recv_message()
        self.attempts += 1
        self.requests.append(request.value)
        if self.attempts <= self.failures:
            raise GRPCError(self.status, f"attempt {self.attempts} failed")
        await stream.send_message(SV(value=f"ok after {self.attempts}"))

    async def stream_after_message(self, stream: Any) -> None:
        await stream.recv_message()
        self.attempts += 1
        await stream.send_message(SV(value="first"))
        raise GRPCError(self.status, "failed after a message")

    async def headers_then_fail(self, stream: Any) -> None:
        await stream.recv_message()
        self.attempts += 1
        await stream.send_initial_metadata(metadata={"x-started": "1"})
        raise GRPCError(self.status, "failed after headers")

    async def total(self, stream: Any) -> None:
        values = [m.value async for m in stream]
        self.attempts += 1
        self.requests.append(values)
        if self.attempts <= self.failures:
            raise GRPCError(self.status, "try again")
        await stream.send_message(IV(value=sum(values)))

    def service(self) -> Service:
        return Service(
            "t.F",
            Unary=(self.unary, UU),
            AfterMessage=(self.stream_after_message, US),
            AfterHeaders=(self.headers_then_fail, UU),
            Sum=(self.total, SU, IV, IV),
        )


async def test_retried_until_success_with_previous_attempts_header(
    start_server: Any, make_channel: Any, monkeypatch: Any
) -> None:
    headers = capture_request_headers(monkeypatch)
    flaky = Flaky(failures=2)
    server = await start_server([flaky.service()])
    log: list[Any] = []
    channel = make_channel(
        server.port,
        middleware=[Middleware(Recorder, name="outer", log=log), Middleware(RetryMiddleware, max_attempts=5, **FAST)],
    )
    reply = await UnaryUnaryMethod(channel, "/t.F/Unary", SV, SV)(SV(value="req"), timeout=10)
    assert reply.value == "ok after 3"
    assert flaky.requests == ["req", "req", "req"]  # the request message was replayed
    assert [h.get(b"grpc-previous-rpc-attempts") for h in headers] == [None, b"1", b"2"]
    # The caller (and middleware outside) see one call with one successful end.
    assert [e for e in log if e[1] == "grpc.response.end"] == [("outer", "grpc.response.end", Status.OK)]


async def test_gives_up_after_max_attempts(start_server: Any, make_channel: Any) -> None:
    flaky = Flaky(failures=100)
    server = await start_server([flaky.service()])
    channel = make_channel(server.port, middleware=[Middleware(RetryMiddleware, max_attempts=3, **FAST)])
    with pytest.raises(GRPCError) as info:
        await UnaryUnaryMethod(channel, "/t.F/Unary", SV, SV)(SV(value="x"))
    assert info.value.status is Status.UNAVAILABLE
    assert info.value.message == "attempt 3 failed"
    assert flaky.attempts == 3


async def test_non_retryable_status_is_not_retried(start_server: Any, make_channel: Any) -> None:
    flaky = Flaky(failures=1, status=Status.INVALID_ARGUMENT)
    server = await start_server([flaky.service()])
    channel = make_channel(server.port, middleware=[Middleware(RetryMiddleware, **FAST)])
    with pytest.raises(GRPCError) as info:
        await UnaryUnaryMethod(channel, "/t.F/Unary", SV, SV)(SV(value="x"))
    assert info.value.status is Status.INVALID_ARGUMENT
    assert flaky.attempts == 1


async def test_configured_retryable_codes(start_server: Any, make_channel: Any) -> None:
    flaky = Flaky(failures=1, status=Status.RESOURCE_EXHAUSTED)
    server = await start_server([flaky.service()])
    channel = make_channel(
        server.port,
        middleware=[Middleware(RetryMiddleware, retryable_status_codes={Status.RESOURCE_EXHAUSTED}, **FAST)],
    )
    assert (await UnaryUnaryMethod(channel, "/t.F/Unary", SV, SV)(SV(value="x"))).value == "ok after 2"


async def test_no_retry_after_a_response_message(start_server: Any, make_channel: Any) -> None:
    flaky = Flaky(failures=100)
    server = await start_server([flaky.service()])
    channel = make_channel(server.port, middleware=[Middleware(RetryMiddleware, **FAST)])
    got = []
    async with channel.request("/t.F/AfterMessage", US, SV, SV) as stream:
        await stream.send_message(SV(value="x"), end=True)
        with pytest.raises(GRPCError) as info:
            async for reply in stream:
                got.append(reply.value)
    assert got == ["first"]
    assert info.value.status is Status.UNAVAILABLE and info.value.message == "failed after a message"
    assert flaky.attempts == 1


async def test_no_retry_after_response_headers(start_server: Any, make_channel: Any) -> None:
    flaky = Flaky(failures=100)
    server = await start_server([flaky.service()])
    channel = make_channel(server.port, middleware=[Middleware(RetryMiddleware, **FAST)])
    async with channel.request("/t.F/AfterHeaders", UU, SV, SV) as stream:
        await stream.send_message(SV(value="x"), end=True)
        with pytest.raises(GRPCError) as info:
            await stream.recv_message()
    assert info.value.status is Status.UNAVAILABLE
    assert stream.initial_metadata == {"x-started": "1"}
    assert flaky.attempts == 1


async def test_never_retries_past_the_deadline(start_server: Any, make_channel: Any) -> None:
    flaky = Flaky(failures=100)
    server = await start_server([flaky.service()])
    channel = make_channel(
        server.port,
        middleware=[
            Middleware(RetryMiddleware, max_attempts=5, initial_backoff=0.2, max_backoff=10, backoff_multiplier=10, jitter=0)
        ],
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(GRPCError) as info:
        # Backoffs 0.2 s then 2 s: the second retry would start after the 1 s deadline.
        await UnaryUnaryMethod(channel, "/t.F/Unary", SV, SV)(SV(value="x"), timeout=1.0)
    elapsed = loop.time() - started
    assert info.value.status is Status.UNAVAILABLE  # the last attempt's status, not DEADLINE_EXCEEDED
    assert flaky.attempts == 2
    assert 0.2 <= elapsed < 1.0


async def test_client_stream_is_replayed(start_server: Any, make_channel: Any) -> None:
    flaky = Flaky(failures=1)
    server = await start_server([flaky.service()])
    channel = make_channel(server.port, middleware=[Middleware(RetryMiddleware, **FAST)])
    reply = await StreamUnaryMethod(channel, "/t.F/Sum", IV, IV)([IV(value=i) for i in range(1, 11)])
    assert reply.value == 55
    assert flaky.requests == [list(range(1, 11))] * 2


async def test_replay_buffer_overflow_commits(start_server: Any, make_channel: Any) -> None:
    flaky = Flaky(failures=1)
    server = await start_server([flaky.service()])
    channel = make_channel(server.port, middleware=[Middleware(RetryMiddleware, max_buffer_size=10, **FAST)])
    with pytest.raises(GRPCError) as info:
        await StreamUnaryMethod(channel, "/t.F/Sum", IV, IV)([IV(value=1000 + i) for i in range(10)])
    assert info.value.status is Status.UNAVAILABLE
    assert flaky.attempts == 1


async def test_connection_refused_is_retried(make_channel: Any) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log: list[Any] = []
    channel = make_channel(
        port,
        middleware=[Middleware(RetryMiddleware, max_attempts=3, **FAST), Middleware(Recorder, name="attempt", log=log)],
    )
    with pytest.raises(GRPCError) as info:
        await UnaryUnaryMethod(channel, "/t.F/Unary", SV, SV)(SV(value="x"))
    assert info.value.status is Status.UNAVAILABLE
    assert [e for e in log if e[1] == "call"] == [("attempt", "call", "/t.F/Unary")] * 3


async def test_throttling_stops_retries(start_server: Any, make_channel: Any) -> None:
    flaky = Flaky(failures=100)
    server = await start_server([flaky.service()])
    throttle = RetryThrottle(max_tokens=4, token_ratio=0.5)
    channel = make_channel(server.port, middleware=[Middleware(RetryMiddleware, throttle=throttle, **FAST)])
    method = UnaryUnaryMethod(channel, "/t.F/Unary", SV, SV)
    with pytest.raises(GRPCError):
        await method(SV(value="x"))
    # 4 tokens: each failed attempt costs one; retries stop at <= 2 tokens.
    assert flaky.attempts == 2 and throttle.tokens == 2
    with pytest.raises(GRPCError):
        await method(SV(value="x"))
    assert flaky.attempts == 3  # no retry while throttled


def test_backoff_schedule_and_validation() -> None:
    retry = RetryMiddleware(None, initial_backoff=0.1, max_backoff=1.0, backoff_multiplier=2, jitter=0.2, rng=lambda: 1.0)  # type: ignore[arg-type]
    assert [round(retry.backoff(n), 3) for n in range(1, 6)] == [0.12, 0.24, 0.48, 0.96, 1.2]
    low = RetryMiddleware(None, jitter=0.2, rng=lambda: 0.0)  # type: ignore[arg-type]
    assert round(low.backoff(1), 3) == 0.08
    for bad in (dict(max_attempts=0), dict(initial_backoff=0), dict(jitter=2), dict(retryable_status_codes={Status.OK})):
        with pytest.raises(ValueError):
            RetryMiddleware(None, **bad)  # type: ignore[arg-type]


async def test_streaming_call_retried_before_commit(start_server: Any, make_channel: Any) -> None:
    attempts = []

    async def split(stream: Any) -> None:
        request = await stream.recv_message()
        attempts.append(1)
        if len(attempts) == 1:
            raise GRPCError(Status.UNAVAILABLE, "cold start")
        for part in request.value.split(","):
            await stream.send_message(SV(value=part))

    server = await start_server([Service("t.S", Split=(split, US))])
    channel = make_channel(server.port, middleware=[Middleware(RetryMiddleware, **FAST)])
    assert [r.value for r in await UnaryStreamMethod(channel, "/t.S/Split", SV, SV)(SV(value="a,b"))] == ["a", "b"]
    assert len(attempts) == 2
