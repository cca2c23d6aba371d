"""Health checking (grpc.health.v1) over a real loopback server.

grpcio-health-checking's client judges the protocol (in a subprocess, see
``grpcio_judge.py``); our own client drives the rest: statuses, watches,
periodic checks (TTL, timeout, failures) and that checks run only while
someone is interested.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator, Callable

import pytest
from google.protobuf import wrappers_pb2
from health_reflection_helpers import no_leaked_tasks  # noqa: F401  (autouse fixture)
from health_reflection_helpers import channel_to, example_server, grpcio_judge, run_example_client, serving

from grpcasgi.client import Channel
from grpcasgi.config import Configuration
from grpcasgi.const import Cardinality, Handler, Status
from grpcasgi.contrib.health import OVERALL, CheckBase, Health, ServiceCheck, ServiceStatus
from grpcasgi.contrib.protos.grpc.health.v1.health_grpc import HealthStub
from grpcasgi.contrib.protos.grpc.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from grpcasgi.exceptions import GRPCError

SERVING = HealthCheckResponse.SERVING
NOT_SERVING = HealthCheckResponse.NOT_SERVING
UNKNOWN = HealthCheckResponse.UNKNOWN
SERVICE_UNKNOWN = HealthCheckResponse.SERVICE_UNKNOWN


class Svc:
    """A service object named ``name`` (its methods are never called here)."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def Ping(self, stream: Any) -> None:
        await stream.recv_message()
        await stream.send_message(wrappers_pb2.StringValue(value="pong"))

    def __mapping__(self) -> dict[str, Handler]:
        sv = wrappers_pb2.StringValue
        return {f"/{self.name}/Ping": Handler(self.Ping, Cardinality.UNARY_UNARY, sv, sv)}


async def check(channel: Channel, service: str) -> Any:
    reply = await HealthStub(channel).Check(HealthCheckRequest(service=service), timeout=10)
    return reply.status


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Loop turns until ``predicate()``; the timeout is only a safety net."""

    async def loop() -> None:
        while not predicate():
            await asyncio.sleep(0.001)

    await asyncio.wait_for(loop(), timeout)


class Watch:
    """An open Watch stream from our client."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    async def next(self) -> Any:
        reply = await asyncio.wait_for(self.stream.recv_message(), 10)
        return None if reply is None else reply.status


@pytest.fixture
async def watch() -> AsyncIterator[Callable[..., Any]]:
    """``w = await watch(channel, service)``; unfinished watches are cancelled at teardown."""
    opened: list[Any] = []

    async def open_watch(channel: Channel, service: str) -> Watch:
        stream = HealthStub(channel).Watch.open(timeout=30)
        await stream.__aenter__()
        opened.append(stream)
        await stream.send_message(HealthCheckRequest(service=service), end=True)
        return Watch(stream)

    yield open_watch
    for stream in opened:
        await stream.cancel()
        await stream.__aexit__(None, None, None)


# -- Check ------------------------------------------------------------------------


async def test_check_statuses() -> None:
    redis = ServiceStatus(True)
    unknown = ServiceStatus()
    auth, billing, plain = Svc("acme.Auth"), Svc("acme.Billing"), Svc("acme.Plain")
    health = Health({auth: [redis], billing: [redis, unknown], plain: [], "acme.Named": [unknown]})
    async with serving([auth, billing, plain, health]) as server, channel_to(server) as channel:
        assert await check(channel, "acme.Auth") == SERVING
        assert await check(channel, "acme.Plain") == SERVING  # no checks: always serving
        assert await check(channel, "acme.Named") == UNKNOWN  # only unknown checks
        assert await check(channel, "acme.Billing") == NOT_SERVING  # True + None is not all healthy
        assert await check(channel, "") == NOT_SERVING  # overall = every check
        unknown.set(True)
        assert await check(channel, "acme.Billing") == SERVING
        assert await check(channel, "") == SERVING
        redis.set(False)
        assert await check(channel, "acme.Auth") == NOT_SERVING
        with pytest.raises(GRPCError) as exc_info:
            await check(channel, "acme.Nope")
        assert exc_info.value.status is Status.NOT_FOUND


async def test_default_and_explicit_overall() -> None:
    async with serving([Health()]) as server, channel_to(server) as channel:
        assert await check(channel, "") == SERVING
        with pytest.raises(GRPCError) as exc_info:
            await check(channel, "grpc.health.v1.Health")
        assert exc_info.value.status is Status.NOT_FOUND

    overall, svc_status = ServiceStatus(False), ServiceStatus(True)
    svc = Svc("acme.Svc")
    async with serving([svc, Health({svc: [svc_status], OVERALL: [overall]})]) as server, channel_to(server) as channel:
        assert await check(channel, "acme.Svc") == SERVING
        assert await check(channel, "") == NOT_SERVING  # OVERALL given: not the union


def test_bad_configuration() -> None:
    with pytest.raises(TypeError):
        Health({Svc("a.B"): [object()]})  # type: ignore[list-item]
    with pytest.raises(TypeError):
        Health({42: []})
    with pytest.raises(TypeError):
        ServiceStatus().set("yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ServiceCheck(lambda: None, check_ttl=0)  # type: ignore[arg-type, return-value]


# -- Watch ------------------------------------------------------------------------


async def test_watch_sees_every_change(watch: Any) -> None:
    status = ServiceStatus(True)
    svc = Svc("acme.Svc")
    async with serving([svc, Health({svc: [status]})]) as server, channel_to(server) as channel:
        w = await watch(channel, "acme.Svc")
        overall = await watch(channel, "")
        assert await w.next() == SERVING
        assert await overall.next() == SERVING
        status.set(False)
        assert await w.next() == NOT_SERVING
        assert await overall.next() == NOT_SERVING
        status.set(False)  # no change, no message
        status.set(None)
        assert await w.next() == UNKNOWN
        assert await overall.next() == UNKNOWN
        status.set(True)
        assert await w.next() == SERVING
        assert await overall.next() == SERVING


async def test_watch_unknown_service_streams_service_unknown(watch: Any) -> None:
    async with serving([Health()]) as server, channel_to(server) as channel:
        w = await watch(channel, "acme.Nope")
        assert await w.next() == SERVICE_UNKNOWN
        # Not an error: the stream stays open until the server shuts down.
        server.close()
        assert await w.next() is None
        await w.stream.recv_trailing_metadata()  # OK, no exception


@pytest.mark.parametrize("grace", [0.0, 5.0])
async def test_close_reports_not_serving_before_connections_close(watch: Any, grace: float) -> None:
    """Server.close() → every watcher gets NOT_SERVING and an OK end; Check says NOT_SERVING.

    With a grace period the watches end by themselves (the server does not
    wait for it); without one, the cancelled watches still say goodbye.
    """
    status = ServiceStatus(True)
    svc = Svc("acme.Svc")
    health = Health({svc: [status]})
    config = Configuration(shutdown_grace=grace)
    async with serving([svc, health], config=config) as server, channel_to(server) as channel:
        w = await watch(channel, "acme.Svc")
        overall = await watch(channel, "")
        assert await w.next() == SERVING
        assert await overall.next() == SERVING
        loop = asyncio.get_running_loop()
        started = loop.time()
        server.close()
        assert health.status("acme.Svc") == NOT_SERVING
        for stream in (w, overall):
            assert await stream.next() == NOT_SERVING
            assert await stream.next() is None
            await stream.stream.recv_trailing_metadata()  # ended OK
        await asyncio.wait_for(server.wait_closed(), 10)
        assert loop.time() - started < grace / 2 + 1


async def test_graceful_shutdown_flag_while_serving() -> None:
    """enter_graceful_shutdown() (e.g. under an ASGI server) drains without closing anything."""
    svc = Svc("acme.Svc")
    health = Health({svc: [ServiceStatus(True)]})
    async with serving([svc, health]) as server, channel_to(server) as channel:
        health.enter_graceful_shutdown()
        assert health.closing
        assert await check(channel, "acme.Svc") == NOT_SERVING
        assert await check(channel, "") == NOT_SERVING
        reply = await HealthStub(channel).Watch(HealthCheckRequest(service="acme.Svc"), timeout=10)
        assert [r.status for r in reply] == [NOT_SERVING]


# -- ServiceCheck -------------------------------------------------------------------


class Probe:
    """A check function whose result and calls the test controls."""

    def __init__(self, result: Any = True) -> None:
        self.result = result
        self.calls = 0
        self.called: asyncio.Queue[int] = asyncio.Queue()
        self.release: asyncio.Event | None = None
        self.cancelled = asyncio.Event()

    async def __call__(self) -> Any:
        self.calls += 1
        self.called.put_nowait(self.calls)
        try:
            if self.release is not None:
                await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result

    async def wait_calls(self, n: int) -> None:
        while self.calls < n:
            await asyncio.wait_for(self.called.get(), 5)


async def test_check_result_is_cached_for_the_ttl() -> None:
    probe = Probe(True)
    check_ = ServiceCheck(probe, check_ttl=0.2, check_timeout=5)
    svc = Svc("acme.Svc")
    async with serving([svc, Health({svc: [check_]})]) as server, channel_to(server) as channel:
        assert probe.calls == 0  # nobody asked yet: nothing ran
        assert await check(channel, "acme.Svc") == SERVING
        assert await check(channel, "acme.Svc") == SERVING
        assert await check(channel, "") == SERVING
        assert probe.calls == 1
        probe.result = False
        await asyncio.sleep(0.25)  # let the TTL pass (the feature under test is time)
        assert await check(channel, "acme.Svc") == NOT_SERVING
        assert probe.calls == 2
        assert not check_.polling  # Check calls never start the periodic loop


@pytest.mark.parametrize(
    "result, expected, log_text",
    [
        (RuntimeError("db down"), NOT_SERVING, "failed"),
        ("yes", NOT_SERVING, "failed"),  # not a bool: a broken check
        (None, UNKNOWN, None),
        (False, NOT_SERVING, None),
    ],
)
async def test_check_results_and_failures(
    result: Any, expected: Any, log_text: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    probe = Probe(result)
    svc = Svc("acme.Svc")
    health = Health({svc: [ServiceCheck(probe, check_ttl=60, check_timeout=5)]})
    caplog.set_level(logging.INFO, logger="grpcasgi.contrib.health")
    async with serving([svc, health]) as server, channel_to(server) as channel:
        assert await check(channel, "acme.Svc") == expected
    if log_text is not None:
        assert any(log_text in r.getMessage() and r.levelno >= logging.ERROR for r in caplog.records)


async def test_check_timeout_counts_as_unhealthy(caplog: pytest.LogCaptureFixture) -> None:
    probe = Probe(True)
    probe.release = asyncio.Event()  # never set: the probe hangs
    svc = Svc("acme.Svc")
    health = Health({svc: [ServiceCheck(probe, check_ttl=60, check_timeout=0.05)]})
    async with serving([svc, health]) as server, channel_to(server) as channel:
        assert await check(channel, "acme.Svc") == NOT_SERVING
    assert probe.cancelled.is_set()
    assert any("timed out" in r.getMessage() for r in caplog.records)


async def test_concurrent_checks_share_one_probe() -> None:
    probe = Probe(True)
    probe.release = asyncio.Event()
    svc = Svc("acme.Svc")
    health = Health({svc: [ServiceCheck(probe, check_ttl=60, check_timeout=5)]})
    async with serving([svc, health]) as server, channel_to(server) as channel:
        calls = [asyncio.ensure_future(check(channel, name)) for name in ("acme.Svc", "acme.Svc", "")]
        await probe.wait_calls(1)
        probe.release.set()
        assert await asyncio.gather(*calls) == [SERVING] * 3
        assert probe.calls == 1


async def test_abandoned_probe_is_cancelled() -> None:
    """A Check whose client gives up (deadline) does not leave the probe running."""
    probe = Probe(True)
    probe.release = asyncio.Event()
    svc = Svc("acme.Svc")
    check_ = ServiceCheck(probe, check_ttl=60, check_timeout=30)
    async with serving([svc, Health({svc: [check_]})]) as server, channel_to(server) as channel:
        with pytest.raises(GRPCError) as exc_info:
            await HealthStub(channel).Check(HealthCheckRequest(service="acme.Svc"), timeout=0.2)
        assert exc_info.value.status is Status.DEADLINE_EXCEEDED
        await asyncio.wait_for(probe.cancelled.wait(), 5)
        # The next Check starts a fresh probe rather than joining the cancelled one.
        probe.release.set()
        assert await check(channel, "acme.Svc") == SERVING
        assert probe.calls == 2


async def test_checks_run_only_while_watched(watch: Any) -> None:
    probe = Probe(True)
    check_ = ServiceCheck(probe, check_ttl=0.01, check_timeout=5)
    svc = Svc("acme.Svc")
    async with serving([svc, Health({svc: [check_]})]) as server, channel_to(server) as channel:
        assert not check_.polling and probe.calls == 0
        w = await watch(channel, "acme.Svc")
        assert await w.next() == SERVING
        assert check_.polling
        await probe.wait_calls(4)  # re-probed every TTL while watched
        probe.result = False
        assert await w.next() == NOT_SERVING  # a change found by polling reaches the watcher
        probe.result = True
        assert await w.next() == SERVING
        await w.stream.cancel()
        await wait_until(lambda: not check_.polling)
        calls = probe.calls
        await asyncio.sleep(0.1)  # ten TTLs without a watcher: no probe may run
        assert probe.calls == calls


async def test_two_watchers_share_the_poller(watch: Any) -> None:
    probe = Probe(True)
    check_ = ServiceCheck(probe, check_ttl=0.01, check_timeout=5)
    svc = Svc("acme.Svc")
    async with serving([svc, Health({svc: [check_]})]) as server, channel_to(server) as channel:
        first, second = await watch(channel, "acme.Svc"), await watch(channel, "")
        assert await first.next() == SERVING
        assert await second.next() == SERVING
        await first.stream.cancel()
        await probe.wait_calls(probe.calls + 2)  # still polled for the second watcher
        assert check_.polling
        await second.stream.cancel()
        await wait_until(lambda: not check_.polling)


async def test_custom_check_raising_keeps_serving_the_call(caplog: pytest.LogCaptureFixture) -> None:
    """A hand-written CheckBase whose __check__ raises is logged; the call still answers."""

    class Broken(CheckBase):
        def __status__(self) -> bool | None:
            return False

        async def __check__(self) -> bool | None:
            raise RuntimeError("broken check")

        async def __subscribe__(self) -> asyncio.Event:
            return asyncio.Event()

        async def __unsubscribe__(self, event: asyncio.Event) -> None:
            pass

    svc = Svc("acme.Svc")
    async with serving([svc, Health({svc: [Broken()]})]) as server, channel_to(server) as channel:
        assert await check(channel, "acme.Svc") == NOT_SERVING
    assert any("raised" in r.getMessage() for r in caplog.records)


# -- grpcio's client as the judge -----------------------------------------------------


async def test_grpcio_health_client() -> None:
    status = ServiceStatus(True)
    svc, plain = Svc("acme.Svc"), Svc("acme.Plain")
    async with serving([svc, plain, Health({svc: [status], plain: []})]) as server:
        async with grpcio_judge(server.port) as judge:
            assert await judge("check", service="") == {"status": "SERVING"}
            assert await judge("check", service="acme.Svc") == {"status": "SERVING"}
            assert await judge("check", service="acme.Plain") == {"status": "SERVING"}
            nope = await judge("check", service="acme.Nope")
            assert nope["code"] == "NOT_FOUND"

            await judge("watch", service="acme.Svc", id="svc")
            await judge("watch", service="acme.Nope", id="nope")
            await judge("watch", service="acme.Plain", id="plain")
            assert await judge("next", id="svc") == {"status": "SERVING"}
            assert await judge("next", id="nope") == {"status": "SERVICE_UNKNOWN"}
            assert await judge("next", id="plain") == {"status": "SERVING"}
            status.set(False)
            assert await judge("next", id="svc") == {"status": "NOT_SERVING"}
            assert await judge("check", service="acme.Svc") == {"status": "NOT_SERVING"}
            status.set(True)
            assert await judge("next", id="svc") == {"status": "SERVING"}

            await judge("watch", service="", id="cancelled")
            assert await judge("next", id="cancelled") == {"status": "SERVING"}
            await judge("cancel", id="cancelled")

            server.close()
            assert await judge("next", id="svc") == {"status": "NOT_SERVING"}
            assert await judge("next", id="svc") == {"end": "OK"}
            assert await judge("next", id="plain") == {"status": "NOT_SERVING"}
            assert await judge("next", id="plain") == {"end": "OK"}
            assert await judge("next", id="nope") == {"end": "OK"}


# -- the example -------------------------------------------------------------------------


async def test_example_server_and_client() -> None:
    async with example_server("health/server.py", "--warmup", "0.3") as (port, server_output):
        lines = await run_example_client("health/client.py", "--port", str(port))
        assert lines[0] in ("check helloworld.Greeter: NOT_SERVING", "check helloworld.Greeter: SERVING")
        assert lines[-1] == "watch helloworld.Greeter: SERVING"
        overall = await run_example_client("health/client.py", "--port", str(port), "--service", "")
        assert overall == ["check <server>: SERVING", "watch <server>: SERVING"]
    assert any("all services NOT_SERVING" in line for line in server_output)
