"""Metrics middleware with the OpenTelemetry SDK's InMemoryMetricReader, over loopback:
instrument names/units per the RPC semantic conventions, attributes, counts, sizes
and the in-flight gauge."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from client_mw_support import SU, SV, UU, IV, Service, echo_service
from grpcasgi import GRPCError, Middleware, Status
from grpcasgi.client import StreamUnaryMethod, UnaryUnaryMethod
from grpcasgi.middleware.metrics import ClientMetricsMiddleware, ServerMetricsMiddleware


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def meter_provider(reader: InMemoryMetricReader) -> MeterProvider:
    return MeterProvider(metric_readers=[reader])


def collect(reader: InMemoryMetricReader) -> dict[str, Any]:
    """name → metric (with .unit and .data.data_points)."""
    data = reader.get_metrics_data()
    out = {}
    for resource_metrics in data.resource_metrics if data else ():
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                out[metric.name] = metric
    return out


def points(metric: Any) -> dict[tuple[tuple[str, Any], ...], Any]:
    return {tuple(sorted(p.attributes.items())): p for p in metric.data.data_points}


def attrs(service: str, method: str, status: int | None = None) -> tuple[tuple[str, Any], ...]:
    base = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}
    if status is not None:
        base["rpc.grpc.status_code"] = status
    return tuple(sorted(base.items()))


async def test_server_and_client_metrics(
    start_server: Any, make_channel: Any, meter_provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    async def fail(stream: Any) -> None:
        raise GRPCError(Status.NOT_FOUND, "none")

    server = await start_server(
        [echo_service(), Service("t.S", Fail=(fail, UU))],
        middleware=[Middleware(ServerMetricsMiddleware, meter_provider=meter_provider)],
    )
    channel = make_channel(server.port, middleware=[Middleware(ClientMetricsMiddleware, meter_provider=meter_provider)])
    unary = UnaryUnaryMethod(channel, "/t.Echo/Unary", SV, SV)
    for word in ("a", "bb", "ccc"):
        await unary(SV(value=word))
    await StreamUnaryMethod(channel, "/t.Echo/Join", SV, SV)([SV(value="x"), SV(value="y")])
    with pytest.raises(GRPCError):
        await UnaryUnaryMethod(channel, "/t.S/Fail", SV, SV)(SV())

    metrics = collect(reader)
    expected_units = {
        "duration": "ms",
        "request.size": "By",
        "response.size": "By",
        "requests_per_rpc": "{count}",
        "responses_per_rpc": "{count}",
    }
    for side in ("server", "client"):
        for suffix, unit in expected_units.items():
            assert metrics[f"rpc.{side}.{suffix}"].unit == unit
        assert metrics[f"grpcasgi.{side}.active_calls"].unit == "{call}"

        duration = points(metrics[f"rpc.{side}.duration"])
        assert duration[attrs("t.Echo", "Unary", 0)].count == 3
        assert duration[attrs("t.Echo", "Join", 0)].count == 1
        assert duration[attrs("t.S", "Fail", 5)].count == 1
        assert all(p.sum >= 0 for p in duration.values())

        sizes = points(metrics[f"rpc.{side}.request.size"])[attrs("t.Echo", "Unary")]
        assert (sizes.count, sizes.sum) == (3, 3 + 4 + 5)  # StringValue: 2 bytes of framing + the text
        replies = points(metrics[f"rpc.{side}.response.size"])[attrs("t.Echo", "Unary")]
        assert (replies.count, replies.sum) == (3, 12)

        per_rpc = points(metrics[f"rpc.{side}.requests_per_rpc"])
        assert per_rpc[attrs("t.Echo", "Join", 0)].sum == 2
        responses = points(metrics[f"rpc.{side}.responses_per_rpc"])
        assert responses[attrs("t.S", "Fail", 5)].sum == 0

        active = points(metrics[f"grpcasgi.{side}.active_calls"])
        assert {p.value for p in active.values()} == {0}


async def test_active_calls_while_in_flight(
    start_server: Any, make_channel: Any, meter_provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    entered = asyncio.Event()
    release = asyncio.Event()

    async def wait(stream: Any) -> None:
        await stream.recv_message()
        entered.set()
        await release.wait()
        await stream.send_message(SV(value="done"))

    server = await start_server(
        [Service("t.S", Wait=(wait, UU))], middleware=[Middleware(ServerMetricsMiddleware, meter_provider=meter_provider)]
    )
    channel = make_channel(server.port, middleware=[Middleware(ClientMetricsMiddleware, meter_provider=meter_provider)])
    call = asyncio.ensure_future(UnaryUnaryMethod(channel, "/t.S/Wait", SV, SV)(SV()))
    await asyncio.wait_for(entered.wait(), 5)
    metrics = collect(reader)
    for side in ("server", "client"):
        (point,) = metrics[f"grpcasgi.{side}.active_calls"].data.data_points
        assert point.value == 1 and dict(point.attributes)["rpc.method"] == "Wait"
    release.set()
    await call
    metrics = collect(reader)
    for side in ("server", "client"):
        (point,) = metrics[f"grpcasgi.{side}.active_calls"].data.data_points
        assert point.value == 0


async def test_unknown_methods_share_one_series(
    start_server: Any, make_channel: Any, meter_provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    server = await start_server([], middleware=[Middleware(ServerMetricsMiddleware, meter_provider=meter_provider)])
    channel = make_channel(server.port)
    for path in ("/probe.A/x", "/probe.B/y", "/probe.C/z"):
        with pytest.raises(GRPCError):
            await UnaryUnaryMethod(channel, path, SV, SV)(SV())
    duration = points(collect(reader)["rpc.server.duration"])
    assert list(duration) == [attrs("_OTHER", "_OTHER", 12)]
    assert duration[attrs("_OTHER", "_OTHER", 12)].count == 3


async def test_client_stream_message_counts(
    start_server: Any, make_channel: Any, meter_provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    async def total(stream: Any) -> None:
        await stream.send_message(IV(value=sum([m.value async for m in stream])))

    server = await start_server([Service("t.S", Sum=(total, SU, IV, IV))])
    channel = make_channel(server.port, middleware=[Middleware(ClientMetricsMiddleware, meter_provider=meter_provider)])
    assert (await StreamUnaryMethod(channel, "/t.S/Sum", IV, IV)([IV(value=i) for i in range(1, 101)])).value == 5050
    metrics = collect(reader)
    (per_rpc,) = metrics["rpc.client.requests_per_rpc"].data.data_points
    assert per_rpc.sum == 100
    (sizes,) = metrics["rpc.client.request.size"].data.data_points
    assert sizes.count == 100 and sizes.sum == sum(IV(value=i).ByteSize() for i in range(1, 101))
