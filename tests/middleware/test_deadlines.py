"""DeadlineMiddleware, and deadline propagation from a handler's outgoing calls."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from google.protobuf.wrappers_pb2 import StringValue
from mw_support import Client, Echo, expect_status, serve

from grpcasgi import Middleware, Status
from grpcasgi.client import Channel
from grpcasgi.middleware import DeadlineMiddleware


def deadline_recorder() -> Echo:
    echo = Echo()

    async def hook(stream: Any) -> None:
        echo.seen["deadline"] = stream.deadline

    echo.hooks["Unary"] = hook
    return echo


async def test_default_deadline_is_enforced() -> None:
    echo = Echo()
    async with serve([Middleware(DeadlineMiddleware, default=0.05)], [echo]) as (_, client):
        err = await expect_status(client.Wait(StringValue(value="x")), Status.DEADLINE_EXCEEDED)
    assert err.message == "Deadline exceeded"
    assert echo.cancelled.is_set()
    assert echo.seen["wait_deadline"] is not None


async def test_maximum_caps_a_longer_client_deadline() -> None:
    echo = Echo()
    async with serve([Middleware(DeadlineMiddleware, maximum=0.05)], [echo]) as (_, client):
        await expect_status(client.Wait(StringValue(value="x"), timeout=60), Status.DEADLINE_EXCEEDED)
    assert echo.cancelled.is_set()


async def test_shorter_client_deadline_and_no_deadline() -> None:
    echo = deadline_recorder()
    async with serve([Middleware(DeadlineMiddleware, default=30, maximum=60)], [echo]) as (_, client):
        await client.unary(timeout=5)
        assert 0 < echo.seen["deadline"].time_remaining() <= 5
        await client.unary()
        assert 5 < echo.seen["deadline"].time_remaining() <= 30
    echo = deadline_recorder()
    async with serve([Middleware(DeadlineMiddleware, maximum=60)], [echo]) as (_, client):
        await client.unary()
        assert 30 < echo.seen["deadline"].time_remaining() <= 60
    echo = deadline_recorder()
    async with serve([Middleware(DeadlineMiddleware)], [echo]) as (_, client):
        await client.unary()
        assert echo.seen["deadline"] is None


@pytest.mark.parametrize("options", [{"default": 0}, {"maximum": -1}, {"default": 10, "maximum": 5}, {"default": "1"}])
def test_options_are_validated(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        DeadlineMiddleware(None, **options)


async def test_deadline_propagates_to_outgoing_calls() -> None:
    """A handler calls a second server with our Channel; the inner call inherits the deadline."""
    inner = deadline_recorder()
    async with serve([], [inner]) as (inner_server, _):
        downstream = Channel("127.0.0.1", inner_server.port)
        outer = Echo()

        async def proxy(stream: Any) -> None:
            outer.seen["outer_deadline"] = stream.deadline
            outer.seen["outer_remaining"] = stream.deadline.time_remaining()
            outer.seen["inner_reply"] = await Client(downstream).unary("nested")

        outer.hooks["Unary"] = proxy
        try:
            # (1) the client's own deadline
            async with serve([], [outer]) as (_, client):
                await client.unary(timeout=20)
            assert inner.seen["deadline"].time_remaining() <= outer.seen["outer_remaining"] <= 20
            assert outer.seen["inner_reply"] == "echo:nested"
            # (2) a deadline given by DeadlineMiddleware to a call that had none
            async with serve([Middleware(DeadlineMiddleware, default=10)], [outer]) as (_, client):
                await client.unary()
            assert inner.seen["deadline"] is not None
            assert inner.seen["deadline"].time_remaining() <= outer.seen["outer_remaining"] <= 10
            # (3) expiry downstream: the outer deadline bounds the inner call
            blocked = Echo()
            async with serve([], [blocked]) as (blocked_server, _):
                slow = Channel("127.0.0.1", blocked_server.port)

                async def call_slow(stream: Any) -> None:
                    await Client(slow).Wait(StringValue(value="x"))

                outer.hooks["Unary"] = call_slow
                async with serve([Middleware(DeadlineMiddleware, maximum=0.2)], [outer]) as (_, client):
                    await expect_status(client.unary(timeout=60), Status.DEADLINE_EXCEEDED)
                slow.close()
                await asyncio.wait_for(blocked.cancelled.wait(), 5)
        finally:
            downstream.close()
