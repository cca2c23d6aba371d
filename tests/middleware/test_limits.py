"""ConcurrencyLimitMiddleware and RateLimitMiddleware over loopback calls."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from google.protobuf.wrappers_pb2 import Int32Value, StringValue
from google.rpc.error_details_pb2 import RetryInfo
from mw_support import Echo, expect_status, serve

from grpcasgi import Cardinality, Middleware, Status
from grpcasgi.middleware import (
    AuthMiddleware,
    BearerTokenScheme,
    ConcurrencyLimitMiddleware,
    DeadlineMiddleware,
    RateLimitMiddleware,
    by_method,
    by_principal,
    select,
)
from grpcasgi.types import App, Receive, Scope, Send


class Probe:
    """Signals ``entered`` each time a call passes; the next layer starts synchronously after."""

    def __init__(self, app: App, *, entered: asyncio.Queue[str]) -> None:
        self.app = app
        self.entered = entered

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.entered.put_nowait(scope["method"])
        await self.app(scope, receive, send)


def keep(holder: dict[str, Any], cls: Any, **options: Any) -> Middleware:
    """A Middleware entry that also stores the built instance in ``holder``."""

    def build(app: App) -> Any:
        holder["mw"] = cls(app, **options)
        return holder["mw"]

    return Middleware(build)


async def test_concurrency_limit_rejects_when_full() -> None:
    echo = Echo()
    holder: dict[str, Any] = {}
    async with serve([keep(holder, ConcurrencyLimitMiddleware, max_in_flight=1)], [echo]) as (_, client):
        blocked = asyncio.ensure_future(client.Wait(StringValue(value="x")))
        await asyncio.wait_for(echo.waiting.wait(), 5)
        err = await expect_status(client.unary(), Status.RESOURCE_EXHAUSTED)
        assert err.message == "Too many concurrent calls (limit 1)"
        assert echo.entered == ["Wait"]
        echo.release.set()
        assert (await blocked).value == "released"
        assert await client.unary() == "echo:hi"
        # failures release their slot too
        await expect_status(client.Fail(StringValue(value="runtime")), Status.UNKNOWN)
        assert await client.unary() == "echo:hi"
    assert holder["mw"].in_flight == 0


async def test_concurrency_limit_waits_first_come_first_served() -> None:
    echo = Echo()
    entered: asyncio.Queue[str] = asyncio.Queue()
    holder: dict[str, Any] = {}
    mw = [Middleware(Probe, entered=entered), keep(holder, ConcurrencyLimitMiddleware, max_in_flight=1, wait_timeout=30)]
    async with serve(mw, [echo]) as (_, client):
        blocked = asyncio.ensure_future(client.Wait(StringValue(value="x")))
        await asyncio.wait_for(echo.waiting.wait(), 5)
        await entered.get()
        second = asyncio.ensure_future(client.unary("second"))
        await asyncio.wait_for(entered.get(), 5)  # now queued in the limiter
        third = asyncio.ensure_future(client.unary("third"))
        await asyncio.wait_for(entered.get(), 5)
        assert echo.entered == ["Wait"]
        echo.release.set()
        assert (await blocked).value == "released"
        assert await second == "echo:second" and await third == "echo:third"
        assert echo.entered == ["Wait", "Unary", "Unary"]
    assert holder["mw"].in_flight == 0


async def test_concurrency_wait_timeout_and_deadline() -> None:
    echo = Echo()
    entered: asyncio.Queue[str] = asyncio.Queue()
    holder: dict[str, Any] = {}
    mw = [
        Middleware(Probe, entered=entered),
        keep(holder, ConcurrencyLimitMiddleware, max_in_flight=1, wait_timeout=0.05),
    ]
    async with serve(mw, [echo]) as (_, client):
        blocked = asyncio.ensure_future(client.Wait(StringValue(value="x")))
        await asyncio.wait_for(echo.waiting.wait(), 5)
        await expect_status(client.unary(), Status.RESOURCE_EXHAUSTED)
        assert [await entered.get(), await entered.get()] == ["Wait", "Unary"]
        # a client cancelling while queued does not leak a slot
        stream = client.channel.request("/test.Echo/Unary", Cardinality.UNARY_UNARY, StringValue, StringValue)
        await stream.send_message(StringValue(value="x"), end=True)
        await asyncio.wait_for(entered.get(), 5)  # queued in the limiter now
        assert len(holder["mw"]._waiters) == 1
        await stream.cancel()
        echo.release.set()
        await blocked
        assert await client.unary() == "echo:hi"
    assert holder["mw"].in_flight == 0 and not holder["mw"]._waiters

    echo = Echo()
    mw = [
        select(Middleware(DeadlineMiddleware, maximum=0.05), include="*/Unary"),
        keep(holder, ConcurrencyLimitMiddleware, max_in_flight=1, wait_timeout=30),
    ]
    async with serve(mw, [echo]) as (_, client):
        blocked = asyncio.ensure_future(client.Wait(StringValue(value="x")))
        await asyncio.wait_for(echo.waiting.wait(), 5)
        # the deadline, not wait_timeout, bounds the wait
        await expect_status(client.unary(timeout=60), Status.DEADLINE_EXCEEDED)
        assert echo.entered == ["Wait"]
        echo.release.set()
        await blocked
    assert holder["mw"].in_flight == 0


@pytest.mark.parametrize("options", [{"max_in_flight": 0}, {"max_in_flight": 1, "wait_timeout": -1}])
def test_concurrency_options_are_validated(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ConcurrencyLimitMiddleware(None, **options)


async def test_rate_limit_per_peer_with_retry_info() -> None:
    echo = Echo()
    async with serve([Middleware(RateLimitMiddleware, rate=0.5, burst=2)], [echo]) as (_, client):
        assert await client.unary() == "echo:hi"
        assert await client.unary() == "echo:hi"
        err = await expect_status(client.unary(), Status.RESOURCE_EXHAUSTED)
    assert err.message == "Rate limit exceeded"
    assert echo.entered == ["Unary", "Unary"]
    (info,) = err.details
    assert isinstance(info, RetryInfo)
    delay = info.retry_delay.ToTimedelta().total_seconds()
    assert 0 < delay <= 2.0  # one token every 2 seconds


async def test_rate_limit_keys() -> None:
    async with serve([Middleware(RateLimitMiddleware, rate=0.001, burst=1, key=by_method)]) as (_, client):
        await client.unary()
        await expect_status(client.unary(), Status.RESOURCE_EXHAUSTED)
        await client.Count(Int32Value(value=1))  # another method, another bucket

    def only_flagged(scope: Scope) -> Any:
        return "flagged" if "x-flag" in scope["metadata"] else None

    async with serve([Middleware(RateLimitMiddleware, rate=0.001, burst=1, key=only_flagged)]) as (_, client):
        for _ in range(3):
            await client.unary()  # key None: not limited
        await client.unary(metadata={"x-flag": "1"})
        await expect_status(client.unary(metadata={"x-flag": "1"}), Status.RESOURCE_EXHAUSTED)

    mw = [
        Middleware(AuthMiddleware, schemes=[BearerTokenScheme(tokens={"a": "alice", "b": "bob"})]),
        Middleware(RateLimitMiddleware, rate=0.001, burst=1, key=by_principal()),
    ]
    async with serve(mw) as (_, client):
        await client.unary(metadata={"authorization": "Bearer a"})
        await client.unary(metadata={"authorization": "Bearer b"})
        await expect_status(client.unary(metadata={"authorization": "Bearer a"}), Status.RESOURCE_EXHAUSTED)


def test_token_bucket_refill_and_eviction() -> None:
    now = [0.0]
    limiter = RateLimitMiddleware(None, rate=2.0, burst=2, max_keys=2, clock=lambda: now[0])
    assert limiter.take("a") == 0 and limiter.take("a") == 0
    assert limiter.take("a") == pytest.approx(0.5)
    now[0] = 0.25
    assert limiter.take("a") == pytest.approx(0.25)  # half a token so far
    now[0] = 0.5
    assert limiter.take("a") == 0
    now[0] = 100.0
    assert [limiter.take("a") for _ in range(3)][-1] > 0  # refilled only up to burst
    limiter.take("b")
    limiter.take("c")  # evicts "a", the least recently used
    assert list(limiter._buckets) == ["b", "c"]
    assert limiter.take("a") == 0  # a fresh bucket


@pytest.mark.parametrize("options", [{"rate": 0, "burst": 1}, {"rate": 1, "burst": 0}, {"rate": float("inf"), "burst": 1}])
def test_rate_options_are_validated(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RateLimitMiddleware(None, **options)
