"""Client resilience: no call hangs when the server dies, reconnect backoff,
wait_for_ready, GOAWAY honoured.

The server-death tests run the server in a subprocess and kill it with
SIGKILL (no GOAWAY, no FIN from a graceful close: the kernel resets the
sockets) while calls of every cardinality sit in every phase.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest
from google.protobuf.wrappers_pb2 import BytesValue
from hostile_support import SV

from grpcasgi.call import Middleware
from grpcasgi.client import Channel, Stream, UnaryUnaryMethod
from grpcasgi.config import Configuration
from grpcasgi.const import Cardinality
from grpcasgi.exceptions import GRPCError
from grpcasgi.protocol.status import Status

SCRIPT = Path(__file__).parent / "scripts" / "victim_server.py"
CARDINALITIES = {
    "UU": Cardinality.UNARY_UNARY,
    "US": Cardinality.UNARY_STREAM,
    "SU": Cardinality.STREAM_UNARY,
    "SS": Cardinality.STREAM_STREAM,
}


class Victim:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.port = 0
        self.entered: set[str] = set()
        self._changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def started(self) -> "Victim":
        assert self.proc.stdout is not None
        line = (await asyncio.wait_for(self.proc.stdout.readline(), 20)).decode().split()
        assert line and line[0] == "port", line
        self.port = int(line[1])
        self._reader = asyncio.ensure_future(self._read())
        return self

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while raw := await self.proc.stdout.readline():
            words = raw.decode().split()
            if words and words[0] == "entered":
                self.entered.add(words[1])
                self._changed.set()

    async def wait_entered(self, names: set[str], timeout: float = 10) -> None:
        async def loop() -> None:
            while not names <= self.entered:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(loop(), timeout)

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()
        if self._reader is not None:
            await self._reader


@pytest.fixture
async def victim() -> AsyncIterator[Callable[..., Awaitable[Victim]]]:
    victims: list[Victim] = []

    async def spawn(port: int = 0) -> Victim:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(SCRIPT), str(port), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        victims.append(Victim(proc))
        return await victims[-1].started()

    yield spawn
    for v in victims:
        await v.kill()


class PassThrough:
    """A client middleware that only forwards (to drive calls through the client stack)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


@pytest.mark.parametrize("stack", [False, True], ids=["plain", "middleware"])
async def test_no_call_hangs_when_the_server_is_killed(victim: Any, stack: bool) -> None:
    server = await victim()
    middleware = [Middleware(PassThrough)] if stack else None
    channel = Channel("127.0.0.1", server.port, middleware=middleware)
    reached: dict[str, asyncio.Event] = {}
    calls: dict[str, asyncio.Task[None]] = {}
    streams: dict[str, Stream[Any, Any]] = {}

    async def run(name: str, cardinality: Cardinality) -> None:
        kind = name[:-2]
        stream = channel.request(f"/v.V/{name}", cardinality, BytesValue, BytesValue)  # no deadline
        streams[name] = stream
        async with stream:
            if kind == "NoRead":
                await stream.send_request()
                for _ in range(1000):  # blocks on flow control long before the end
                    sending = asyncio.ensure_future(stream.send_message(BytesValue(value=b"z" * 65536)))
                    done, _ = await asyncio.wait([sending], timeout=0.3)
                    if not done:  # the server reads nothing: windows and queues are full
                        reached[name].set()
                    await sending
                raise AssertionError("never blocked on flow control")
            # Client-streaming calls keep their request stream open: they are
            # mid-stream on the client side as well.
            await stream.send_message(BytesValue(value=name.encode()), end=not cardinality.client_streaming)
            if stack:
                # Through the client stack a unary-request call runs inline in
                # the first recv_*, which returns once the call is over: the
                # phase is the server's ("entered" below).
                reached[name].set()
            if kind == "Silent":
                reached[name].set()
                await stream.recv_initial_metadata()
            elif kind == "Headers":
                await stream.recv_initial_metadata()
                reached[name].set()
            else:  # Some
                for _ in range(3):
                    assert await stream.recv_message() is not None
                reached[name].set()
            # The error surfaces here at the latest (a StackStream reports a
            # failure without response headers as an empty start, like Trailers-Only).
            await stream.recv_message()
            raise AssertionError(f"{name}: the call went on")

    plan = [f"{kind}{c}" for kind in ("Silent", "Headers") for c in CARDINALITIES]
    plan += ["SomeUS", "SomeSS", "NoReadSU", "NoReadSS"]
    for name in plan:
        reached[name] = asyncio.Event()
        calls[name] = asyncio.ensure_future(run(name, CARDINALITIES[name[-2:]]))
    await server.wait_entered(set(plan))
    for name in plan:
        try:
            await asyncio.wait_for(reached[name].wait(), 10)
        except asyncio.TimeoutError:
            raise AssertionError(f"{name} did not reach its phase") from None
    loop = asyncio.get_running_loop()
    killed = loop.time()
    await server.kill()
    done, pending = await asyncio.wait(calls.values(), timeout=5)
    assert not pending, f"calls still hanging: {[n for n, t in calls.items() if t in pending]}"
    elapsed = loop.time() - killed
    assert elapsed < 3, elapsed
    for name, task in calls.items():
        error = task.exception()
        assert isinstance(error, GRPCError), (name, error)
        assert error.status is Status.UNAVAILABLE, (name, error)
    # The channel is still usable: the next call fails fast too (nobody listens).
    with pytest.raises(GRPCError) as info:
        await UnaryUnaryMethod(channel, "/v.V/Echo", BytesValue, BytesValue)(BytesValue(value=b"x"), timeout=5)
    assert info.value.status is Status.UNAVAILABLE
    await channel.__aexit__(None, None, None)


async def test_killed_server_restarted_on_the_same_port(victim: Any) -> None:
    server = await victim()
    port = server.port
    async with Channel("127.0.0.1", port, config=Configuration(reconnect_initial_backoff=0.05)) as channel:
        echo = UnaryUnaryMethod(channel, "/v.V/Echo", BytesValue, BytesValue)
        assert (await echo(BytesValue(value=b"1"), timeout=10)).value == b"1"
        await server.kill()
        with pytest.raises(GRPCError) as info:
            await echo(BytesValue(value=b"2"), timeout=5)
        assert info.value.status is Status.UNAVAILABLE
        waiting = asyncio.ensure_future(echo(BytesValue(value=b"3"), timeout=20, wait_for_ready=True))
        await victim(port)
        assert (await waiting).value == b"3"


# -- reconnect backoff and wait_for_ready ------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class CountingConnector:
    """Stands in for the TCP connect: counts attempts; refuses until told to serve."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.attempts: list[float] = []
        self.serve = False

    async def __call__(self, factory: Any) -> Any:
        loop = asyncio.get_running_loop()
        self.attempts.append(loop.time())
        if not self.serve:
            raise ConnectionRefusedError("refused (test)")
        _, proto = await loop.create_connection(factory, "127.0.0.1", self.port)
        return proto


def counting_channel(port: int, **config: Any) -> tuple[Channel, CountingConnector]:
    channel = Channel("127.0.0.1", port, config=Configuration(**config))
    connector = CountingConnector(port)
    channel._connector = connector
    return channel, connector


async def test_fail_fast_calls_do_not_hammer_a_dead_server() -> None:
    channel, connector = counting_channel(free_port(), reconnect_initial_backoff=5)
    method = UnaryUnaryMethod(channel, "/h.Echo/Unary", SV, SV)
    for _ in range(20):
        with pytest.raises(GRPCError) as info:
            await method(SV(value="x"))
        assert info.value.status is Status.UNAVAILABLE
    assert len(connector.attempts) == 1
    assert "next attempt in" in (info.value.message or "")
    assert "refused (test)" in (info.value.message or "")
    await channel.__aexit__(None, None, None)


async def test_wait_for_ready_retries_with_exponential_backoff_until_the_deadline() -> None:
    channel, connector = counting_channel(
        free_port(), reconnect_initial_backoff=0.05, reconnect_backoff_multiplier=2, reconnect_jitter=0
    )
    method = UnaryUnaryMethod(channel, "/h.Echo/Unary", SV, SV)
    with pytest.raises(GRPCError) as info:
        await method(SV(value="x"), timeout=0.9, wait_for_ready=True)
    assert info.value.status is Status.DEADLINE_EXCEEDED
    gaps = [b - a for a, b in zip(connector.attempts, connector.attempts[1:])]
    # 0.05, 0.1, 0.2, 0.4 s: exponential, not a busy loop.
    assert 4 <= len(connector.attempts) <= 5, connector.attempts
    for gap, expected in zip(gaps, (0.05, 0.1, 0.2, 0.4)):
        assert expected * 0.8 <= gap <= expected + 0.15, gaps
    await channel.__aexit__(None, None, None)


async def test_backoff_is_capped_and_reset_by_a_good_connection(serve: Any) -> None:
    server, _ = await serve()
    channel, connector = counting_channel(
        server.port, reconnect_initial_backoff=0.02, reconnect_max_backoff=0.04, reconnect_jitter=0
    )
    method = UnaryUnaryMethod(channel, "/h.Echo/Unary", SV, SV)
    with pytest.raises(GRPCError):
        await method(SV(value="x"), timeout=0.3, wait_for_ready=True)
    gaps = [b - a for a, b in zip(connector.attempts, connector.attempts[1:])]
    assert max(gaps) < 0.04 + 0.1 and len(connector.attempts) >= 5
    connector.serve = True
    assert (await method(SV(value="up"), timeout=5, wait_for_ready=True)).value == "up"
    assert channel._backoff is None  # a connection resets the backoff
    await channel.__aexit__(None, None, None)


@pytest.mark.parametrize("where", ["channel", "call", "call through middleware"])
async def test_wait_for_ready_waits_for_the_server_to_come_up(serve: Any, where: str) -> None:
    port = free_port()
    kwargs: dict[str, Any] = {"config": Configuration(reconnect_initial_backoff=0.05)}
    if where == "channel":
        kwargs["wait_for_ready"] = True
    if where == "call through middleware":
        kwargs["middleware"] = [Middleware(PassThrough)]
    async with Channel("127.0.0.1", port, **kwargs) as channel:
        method = UnaryUnaryMethod(channel, "/h.Echo/Unary", SV, SV)
        call_kwargs = {} if where == "channel" else {"wait_for_ready": True}
        call = asyncio.ensure_future(method(SV(value="ready"), timeout=20, **call_kwargs))
        while channel._connect_error is None:  # its first attempt failed
            await asyncio.sleep(0.005)
        assert not call.done()
        from grpcasgi.server import Server
        from hostile_support import Echo

        server = Server([Echo()])
        await server.start("127.0.0.1", port)
        try:
            assert (await call).value == "ready"
        finally:
            server.close()
            await server.wait_closed()


async def test_close_wakes_calls_waiting_for_ready() -> None:
    channel, connector = counting_channel(free_port(), reconnect_initial_backoff=30)
    method = UnaryUnaryMethod(channel, "/h.Echo/Unary", SV, SV)
    call = asyncio.ensure_future(method(SV(value="x"), wait_for_ready=True))
    while not connector.attempts:
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.01)
    channel.close()
    with pytest.raises(GRPCError) as info:
        await asyncio.wait_for(call, 5)
    assert info.value.status is Status.UNAVAILABLE


async def test_goaway_new_calls_use_a_new_connection_while_old_ones_finish(serve: Any) -> None:
    server, echo = await serve(max_connection_age=0.2)
    async with Channel("127.0.0.1", server.port) as channel:
        async with channel.request("/h.Echo/StreamOut", Cardinality.UNARY_STREAM, SV, BytesValue, timeout=20) as old:
            await old.send_message(SV(value="2000"), end=True)
            assert await old.recv_message() is not None
            first_conn = channel._protocol
            assert first_conn is not None
            await asyncio.wait_for(_until(lambda: not first_conn.usable), 5)  # the GOAWAY arrived
            new = await UnaryUnaryMethod(channel, "/h.Echo/Unary", SV, SV)(SV(value="new"), timeout=5)
            assert new.value == "new"
            assert channel._protocol is not first_conn
            rest = [m async for m in old]  # the old call completes on the old connection
        assert len(rest) == 1999


async def _until(predicate: Callable[[], bool]) -> None:
    while not predicate():
        await asyncio.sleep(0.005)


async def test_client_idle_timeout_closes_and_reopens(serve: Any) -> None:
    server, _ = await serve()  # the server has no idle timeout of its own
    async with Channel("127.0.0.1", server.port, config=Configuration(idle_timeout=0.1)) as channel:
        method = UnaryUnaryMethod(channel, "/h.Echo/Unary", SV, SV)
        assert (await method(SV(value="1"), timeout=5)).value == "1"
        first = channel._protocol
        assert first is not None
        await asyncio.wait_for(asyncio.shield(first.closed), 5)  # closed by the client, idle
        assert (await method(SV(value="2"), timeout=5)).value == "2"
        assert channel._protocol is not first
        # A call that stays open keeps the connection, however long.
        async with channel.request("/h.Echo/Hang", Cardinality.UNARY_UNARY, SV, SV, timeout=5) as call:
            await call.send_message(SV(value="x"), end=True)
            busy = channel._protocol
            await asyncio.sleep(0.35)
            assert busy is not None and not busy.closed.done()
            await call.cancel()
