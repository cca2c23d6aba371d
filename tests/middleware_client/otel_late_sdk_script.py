"""Run by test_otel_noop.py in a fresh interpreter (global providers can be set once per process).

Builds a server and a channel with the tracing and metrics middleware while
no OpenTelemetry SDK is configured (the API's proxies, in no-op mode), makes
calls, then sets SDK providers globally and makes more calls on the *same*
server and channel. Prints one JSON object with what the handler saw and what
the SDK recorded, for the test to check.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "common"))  # common_support, for client_mw_support

from opentelemetry import baggage, context, metrics, trace  # noqa: E402
from opentelemetry.propagate import inject  # noqa: E402

from client_mw_support import UU, Service  # noqa: E402
from google.protobuf.wrappers_pb2 import StringValue  # noqa: E402
from grpcasgi import Middleware  # noqa: E402
from grpcasgi.client import Channel, UnaryUnaryMethod  # noqa: E402
from grpcasgi.middleware.metrics import ClientMetricsMiddleware, ServerMetricsMiddleware  # noqa: E402
from grpcasgi.middleware.tracing import ClientTracingMiddleware, ServerTracingMiddleware  # noqa: E402
from grpcasgi.server import Server  # noqa: E402

#: A remote caller's trace context, as another service would send it.
REMOTE_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def main() -> dict[str, Any]:
    seen: list[dict[str, Any]] = []

    async def leaf(stream: Any) -> None:
        await stream.recv_message()
        await stream.send_message(StringValue(value=stream.metadata.get("traceparent", "")))

    leaf_server = Server([Service("t.Leaf", Get=(leaf, UU))])
    await leaf_server.start("127.0.0.1", 0)
    # The handler's own outgoing calls go through a traced channel: they carry
    # the trace context the server middleware made current.
    leaf_channel = Channel("127.0.0.1", leaf_server.port, middleware=[Middleware(ClientTracingMiddleware)])
    leaf_method = UnaryUnaryMethod(leaf_channel, "/t.Leaf/Get", StringValue, StringValue)

    async def hop(stream: Any) -> None:
        await stream.recv_message()
        span_context = trace.get_current_span().get_span_context()
        downstream = await leaf_method(StringValue())
        seen.append(
            {
                "trace_id": f"{span_context.trace_id:032x}",
                "span_id": f"{span_context.span_id:016x}",
                "tenant": baggage.get_baggage("tenant"),
                "downstream_traceparent": downstream.value,
            }
        )
        await stream.send_message(StringValue(value="ok"))

    server = Server(
        [Service("t.Hop", Do=(hop, UU))],
        middleware=[Middleware(ServerTracingMiddleware), Middleware(ServerMetricsMiddleware)],
    )
    await server.start("127.0.0.1", 0)
    channel = Channel(
        "127.0.0.1",
        server.port,
        middleware=[Middleware(ClientTracingMiddleware), Middleware(ClientMetricsMiddleware)],
    )
    method = UnaryUnaryMethod(channel, "/t.Hop/Do", StringValue, StringValue)
    try:
        # 1. No SDK: a call carrying a remote parent and baggage, one without.
        await method(StringValue(), metadata={"traceparent": REMOTE_TRACEPARENT, "baggage": "tenant=acme"})
        await method(StringValue())
        # Baggage alone (no traceparent) is still extracted and passed on.
        await method(StringValue(), metadata={"baggage": "tenant=initech"})

        # 2. An SDK arrives after the middleware were built.
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(tracer_provider)
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

        token = context.attach(baggage.set_baggage("tenant", "globex"))
        try:
            carrier: dict[str, str] = {}
            inject(carrier)  # no current span: only the baggage
            await method(StringValue(), metadata=carrier)
        finally:
            context.detach(token)
    finally:
        for ch in (channel, leaf_channel):
            await ch.__aexit__(None, None, None)
        for srv in (server, leaf_server):
            srv.close()
            await srv.wait_closed()

    data = reader.get_metrics_data()
    metric_names = sorted(
        {m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics} if data else set()
    )
    durations = [
        point.count
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name in ("rpc.server.duration", "rpc.client.duration")
        for point in m.data.data_points
    ]
    spans = [(s.name, s.kind.name) for s in exporter.get_finished_spans()]
    return {"seen": seen, "spans": spans, "metrics": metric_names, "duration_counts": durations}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
