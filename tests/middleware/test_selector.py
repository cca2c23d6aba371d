"""Selector: a middleware applied to matching methods only."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.wrappers_pb2 import Int32Value, StringValue
from mw_support import Echo, expect_status, serve

from grpcasgi import Middleware, Status
from grpcasgi.client import UnaryUnaryMethod
from grpcasgi.contrib.health import Health
from grpcasgi.contrib.protos.grpc.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from grpcasgi.contrib.protos.grpc.health.v1.health_grpc import HealthStub
from grpcasgi.middleware import SYSTEM_SERVICES, Selector, matches, select, send_status
from grpcasgi.types import App, Receive, Scope, Send


class Reject:
    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_status(send, Status.PERMISSION_DENIED, "rejected by selected middleware")


def scope_for(path: str) -> Any:
    service, _, method = path[1:].partition("/")
    return {"path": path, "service": service, "method": method}


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("grpc.health.v1.Health", "/grpc.health.v1.Health/Check", True),
        ("grpc.health.v1.Health", "/grpc.health.v1.HealthX/Check", False),
        ("grpc.reflection.*", "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", True),
        ("grpc.health.v1.Health/*", "/grpc.health.v1.Health/Watch", True),
        ("*/Get*", "/shop.Orders/GetOrder", True),
        ("*/Get*", "/shop.Orders/ListOrders", False),
        ("/shop.Orders/GetOrder", "/shop.Orders/GetOrder", True),
        ("/shop.Orders/Get", "/shop.Orders/GetOrder", False),
        ("shop.*", "/shop.Orders/GetOrder", True),
        ("Shop.*", "/shop.Orders/GetOrder", False),  # case-sensitive
    ],
)
def test_pattern_shapes(pattern: str, path: str, expected: bool) -> None:
    assert matches(pattern, scope_for(path)) is expected


def test_patterns_are_validated() -> None:
    with pytest.raises(TypeError):
        select(Middleware(Reject), include=[""])
    with pytest.raises(TypeError):
        select(Reject)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Selector(Reject(None), Reject)  # type: ignore[arg-type,arg-type]


async def test_exclude_system_services() -> None:
    echo = Echo()
    async with serve([select(Middleware(Reject), exclude=SYSTEM_SERVICES)], [echo, Health()]) as (_, client):
        reply = await HealthStub(client.channel).Check(HealthCheckRequest())
        assert reply.status == HealthCheckResponse.SERVING
        await expect_status(client.unary(), Status.PERMISSION_DENIED)
        # unknown methods are matched by their names too
        await expect_status(client.Missing(StringValue()), Status.PERMISSION_DENIED)
        unknown_health = UnaryUnaryMethod[StringValue, StringValue](
            client.channel, "/grpc.health.v1.Health/Nope", StringValue, StringValue
        )
        await expect_status(unknown_health(StringValue()), Status.UNIMPLEMENTED)
    assert echo.entered == []


async def test_include_and_exclude_combine() -> None:
    echo = Echo()
    entry = select(Middleware(Reject), include=["test.Echo/*"], exclude=["/test.Echo/Count"])
    async with serve([entry], [echo]) as (_, client):
        await expect_status(client.unary(), Status.PERMISSION_DENIED)
        assert [r.value for r in await client.Count(Int32Value(value=2))] == [0, 1]
    assert echo.entered == ["Count"]


async def test_predicate() -> None:
    def has_flag(scope: Scope) -> bool:
        return scope["metadata"].get("x-flag") == "on"

    async with serve([select(Middleware(Reject), predicate=has_flag)]) as (_, client):
        assert await client.unary() == "echo:hi"
        await expect_status(client.unary(metadata={"x-flag": "on"}), Status.PERMISSION_DENIED)


async def test_selector_as_a_plain_middleware_entry() -> None:
    async with serve([Middleware(Selector, Middleware(Reject), include="/test.Echo/Sum")]) as (_, client):
        assert await client.unary() == "echo:hi"
        await expect_status(client.Sum([Int32Value(value=1)]), Status.PERMISSION_DENIED)


async def test_selection_stays_the_same_once_remembered() -> None:
    # The first call to a method matches the patterns; later ones use what was remembered.
    echo = Echo()
    entry = select(Middleware(Reject), include=["test.Echo/*"], exclude=["/test.Echo/Count"])
    async with serve([entry], [echo]) as (_, client):
        for _ in range(3):
            await expect_status(client.unary(), Status.PERMISSION_DENIED)
            assert [r.value for r in await client.Count(Int32Value(value=2))] == [0, 1]
            await expect_status(client.Missing(StringValue()), Status.PERMISSION_DENIED)
    assert echo.entered == ["Count"] * 3


def test_only_routed_paths_are_remembered() -> None:
    async def inner(scope: Scope, receive: Receive, send: Send) -> None:  # pragma: no cover - not called
        pass

    selector = Selector(inner, Middleware(Reject), exclude=SYSTEM_SERVICES)
    for i in range(100):  # a client inventing paths must not grow the server's memory
        assert selector.selects({**scope_for(f"/x.Probe/M{i}"), "handler": None})
    assert len(selector._matched) == 0
    health = {**scope_for("/grpc.health.v1.Health/Check"), "handler": object()}
    assert not selector.selects(health) and not selector.selects(health)
    assert selector._matched == {"/grpc.health.v1.Health/Check": False}
