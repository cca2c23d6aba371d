"""Tracing middleware with the OpenTelemetry SDK's in-memory exporter, over loopback:
span names, kinds, attributes and statuses per the RPC semantic conventions, and
parent/child links across client → server A → (traced channel) → server B."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from opentelemetry import baggage, context, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from client_mw_support import SS, SV, UU, Service
from grpcasgi import GRPCError, Middleware, Status
from grpcasgi.client import UnaryUnaryMethod
from grpcasgi.middleware.retry import RetryMiddleware
from grpcasgi.middleware.tracing import ClientTracingMiddleware, ServerTracingMiddleware


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def spans_by_name(exporter: InMemorySpanExporter) -> dict[tuple[str, SpanKind], Any]:
    return {(s.name, s.kind): s for s in exporter.get_finished_spans()}


async def test_two_hop_chain_is_one_trace(
    start_server: Any, make_channel: Any, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async def leaf(stream: Any) -> None:
        request = await stream.recv_message()
        await stream.send_message(SV(value=f"{request.value}|tenant={baggage.get_baggage('tenant')}"))

    server_b = await start_server(
        [Service("t.B", Leaf=(leaf, UU))], middleware=[Middleware(ServerTracingMiddleware, tracer_provider=provider)]
    )
    channel_b = make_channel(server_b.port, middleware=[Middleware(ClientTracingMiddleware, tracer_provider=provider)])

    async def hop(stream: Any) -> None:
        request = await stream.recv_message()
        reply = await UnaryUnaryMethod(channel_b, "/t.B/Leaf", SV, SV)(SV(value=request.value + ">A"))
        await stream.send_message(SV(value=reply.value + ">A"))

    server_a = await start_server(
        [Service("t.A", Hop=(hop, UU))], middleware=[Middleware(ServerTracingMiddleware, tracer_provider=provider)]
    )
    channel_a = make_channel(server_a.port, middleware=[Middleware(ClientTracingMiddleware, tracer_provider=provider)])

    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("root") as root:
        token = context.attach(baggage.set_baggage("tenant", "acme"))
        try:
            reply = await UnaryUnaryMethod(channel_a, "/t.A/Hop", SV, SV)(SV(value="c"))
        finally:
            context.detach(token)
    assert reply.value == "c>A|tenant=acme>A"  # baggage crossed both hops

    spans = spans_by_name(exporter)
    client = spans[("t.A/Hop", SpanKind.CLIENT)]
    server_a_span = spans[("t.A/Hop", SpanKind.SERVER)]
    client_b = spans[("t.B/Leaf", SpanKind.CLIENT)]
    server_b_span = spans[("t.B/Leaf", SpanKind.SERVER)]
    trace_id = root.get_span_context().trace_id
    assert {s.context.trace_id for s in spans.values()} == {trace_id}
    assert client.parent.span_id == root.get_span_context().span_id
    assert server_a_span.parent.span_id == client.context.span_id and server_a_span.parent.is_remote
    assert client_b.parent.span_id == server_a_span.context.span_id and not client_b.parent.is_remote
    assert server_b_span.parent.span_id == client_b.context.span_id and server_b_span.parent.is_remote

    assert dict(client.attributes) == {
        "rpc.system": "grpc",
        "rpc.service": "t.A",
        "rpc.method": "Hop",
        "server.address": "127.0.0.1",
        "server.port": server_a.port,
        "network.peer.address": "127.0.0.1",
        "network.peer.port": server_a.port,
        "rpc.grpc.status_code": 0,
    }
    attrs = dict(server_b_span.attributes)
    assert attrs["rpc.system"] == "grpc" and attrs["rpc.service"] == "t.B" and attrs["rpc.method"] == "Leaf"
    assert attrs["rpc.grpc.status_code"] == 0
    assert attrs["server.address"] == "127.0.0.1" and attrs["server.port"] == server_b.port
    assert attrs["network.peer.address"] == "127.0.0.1" and isinstance(attrs["network.peer.port"], int)
    for span in spans.values():
        if span.name != "root":
            assert span.status.status_code is StatusCode.UNSET
            assert span.instrumentation_scope.name == "grpcasgi"
            assert span.instrumentation_scope.schema_url == "https://opentelemetry.io/schemas/1.27.0"


async def status_spans(
    start_server: Any, make_channel: Any, provider: TracerProvider, exporter: InMemorySpanExporter, handler: Any
) -> tuple[Any, Any, Any]:
    server = await start_server(
        [Service("t.S", M=(handler, UU))], middleware=[Middleware(ServerTracingMiddleware, tracer_provider=provider)]
    )
    channel = make_channel(server.port, middleware=[Middleware(ClientTracingMiddleware, tracer_provider=provider)])
    with pytest.raises(GRPCError) as info:
        await UnaryUnaryMethod(channel, "/t.S/M", SV, SV)(SV())
    spans = spans_by_name(exporter)
    return info.value, spans[("t.S/M", SpanKind.CLIENT)], spans[("t.S/M", SpanKind.SERVER)]


async def test_client_error_status_is_not_a_server_error(
    start_server: Any, make_channel: Any, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async def missing(stream: Any) -> None:
        raise GRPCError(Status.NOT_FOUND, "no such thing")

    error, client, server = await status_spans(start_server, make_channel, provider, exporter, missing)
    assert error.status is Status.NOT_FOUND
    assert client.attributes["rpc.grpc.status_code"] == 5 and server.attributes["rpc.grpc.status_code"] == 5
    assert client.status.status_code is StatusCode.ERROR
    assert client.status.description == "NOT_FOUND: no such thing"
    assert server.status.status_code is StatusCode.UNSET


async def test_server_fault_is_an_error_on_both_sides(
    start_server: Any, make_channel: Any, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async def broken(stream: Any) -> None:
        raise GRPCError(Status.INTERNAL, "database on fire")

    _, client, server = await status_spans(start_server, make_channel, provider, exporter, broken)
    assert client.status.status_code is StatusCode.ERROR and server.status.status_code is StatusCode.ERROR
    assert server.attributes["rpc.grpc.status_code"] == 13


async def test_handler_exception_is_recorded(
    start_server: Any, make_channel: Any, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async def crash(stream: Any) -> None:
        raise ZeroDivisionError("oops")

    error, client, server = await status_spans(start_server, make_channel, provider, exporter, crash)
    assert error.status is Status.UNKNOWN
    assert server.attributes["rpc.grpc.status_code"] == 2
    assert server.status.status_code is StatusCode.ERROR
    (event,) = [e for e in server.events if e.name == "exception"]
    assert event.attributes["exception.type"] == "ZeroDivisionError"
    assert client.attributes["rpc.grpc.status_code"] == 2


async def test_unimplemented_method_span(
    start_server: Any, make_channel: Any, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    server = await start_server([], middleware=[Middleware(ServerTracingMiddleware, tracer_provider=provider)])
    channel = make_channel(server.port)
    with pytest.raises(GRPCError):
        await UnaryUnaryMethod(channel, "/t.Gone/Away", SV, SV)(SV())
    (span,) = exporter.get_finished_spans()
    assert span.name == "t.Gone/Away" and span.kind is SpanKind.SERVER
    assert span.attributes["rpc.grpc.status_code"] == 12 and span.status.status_code is StatusCode.ERROR


async def test_streaming_call_span_parent_and_message_events(
    start_server: Any, make_channel: Any, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async def upper(stream: Any) -> None:
        async for m in stream:
            await stream.send_message(SV(value=m.value.upper()))

    server = await start_server(
        [Service("t.S", Upper=(upper, SS))],
        middleware=[Middleware(ServerTracingMiddleware, tracer_provider=provider, message_events=True)],
    )
    channel = make_channel(
        server.port, middleware=[Middleware(ClientTracingMiddleware, tracer_provider=provider, message_events=True)]
    )
    with provider.get_tracer("test").start_as_current_span("root") as root:
        async with channel.request("/t.S/Upper", SS, SV, SV) as stream:
            for word in ("ab", "cde"):
                await stream.send_message(SV(value=word))
                await stream.recv_message()
            await stream.end()
            assert await stream.recv_message() is None
    spans = spans_by_name(exporter)  # all ended when the call's "async with" exited
    client = spans[("t.S/Upper", SpanKind.CLIENT)]
    server_span = spans[("t.S/Upper", SpanKind.SERVER)]
    assert client.parent.span_id == root.get_span_context().span_id
    assert server_span.parent.span_id == client.context.span_id

    def messages(span: Any) -> list[tuple[str, int, int]]:
        return [
            (e.attributes["message.type"], e.attributes["message.id"], e.attributes["message.uncompressed_size"])
            for e in span.events
            if e.name == "message"
        ]

    assert messages(client) == [("SENT", 1, 4), ("RECEIVED", 1, 4), ("SENT", 2, 5), ("RECEIVED", 2, 5)]
    assert messages(server_span) == [("RECEIVED", 1, 4), ("SENT", 1, 4), ("RECEIVED", 2, 5), ("SENT", 2, 5)]


async def test_one_span_per_attempt_inside_retry(
    start_server: Any, make_channel: Any, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    attempts = 0

    async def flaky(stream: Any) -> None:
        nonlocal attempts
        await stream.recv_message()
        attempts += 1
        if attempts == 1:
            raise GRPCError(Status.UNAVAILABLE, "warming up")
        await stream.send_message(SV(value="ok"))

    server = await start_server([Service("t.S", M=(flaky, UU))])
    channel = make_channel(
        server.port,
        middleware=[
            Middleware(ClientTracingMiddleware, tracer_provider=provider),  # the call
            Middleware(RetryMiddleware, initial_backoff=0.01),
            Middleware(ClientTracingMiddleware, tracer_provider=provider),  # each attempt
        ],
    )
    await UnaryUnaryMethod(channel, "/t.S/M", SV, SV)(SV())
    spans = exporter.get_finished_spans()
    codes = [s.attributes["rpc.grpc.status_code"] for s in spans]
    assert codes == [14, 0, 0]  # attempt 1, attempt 2, then the call
    call = spans[-1]
    assert all(s.parent.span_id == call.context.span_id for s in spans[:2])


def test_modules_import_without_opentelemetry() -> None:
    code = (
        "import sys\n"
        "sys.modules['opentelemetry'] = None  # make any import of it fail\n"
        "import grpcasgi.middleware.tracing, grpcasgi.middleware.metrics\n"
        "from grpcasgi.middleware.tracing import ServerTracingMiddleware\n"
        "try:\n"
        "    ServerTracingMiddleware(None)\n"
        "except ImportError as exc:\n"
        "    print('ImportError:', exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "pip install 'grpcasgi[otel]'" in result.stdout


def test_package_exports_client_and_otel_middleware_lazily() -> None:
    code = (
        "import sys\n"
        "sys.modules['opentelemetry'] = None  # make any import of it fail\n"
        "import grpcasgi.middleware as mw\n"
        "assert 'grpcasgi.client' not in sys.modules, 'server-only imports load the client'\n"
        "from grpcasgi.middleware import *\n"
        "from grpcasgi.middleware import retry, credentials, tracing, metrics\n"
        "assert RetryMiddleware is retry.RetryMiddleware and RetryThrottle is retry.RetryThrottle\n"
        "assert CallCredentialsMiddleware is credentials.CallCredentialsMiddleware\n"
        "assert ApiKeyCredentialsMiddleware is credentials.ApiKeyCredentialsMiddleware\n"
        "assert ServerTracingMiddleware is tracing.ServerTracingMiddleware\n"
        "assert ClientTracingMiddleware is tracing.ClientTracingMiddleware\n"
        "assert ServerMetricsMiddleware is metrics.ServerMetricsMiddleware\n"
        "assert ClientMetricsMiddleware is metrics.ClientMetricsMiddleware\n"
        "assert {'RetryMiddleware', 'ClientMetricsMiddleware'} <= set(dir(mw))\n"
        "try:\n"
        "    mw.NoSuchMiddleware\n"
        "except AttributeError:\n"
        "    print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
