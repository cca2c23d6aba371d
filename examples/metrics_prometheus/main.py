"""Export grpcasgi's call metrics to Prometheus through OpenTelemetry.

    pip install 'grpcasgi[otel]' opentelemetry-sdk opentelemetry-exporter-prometheus
    python examples/metrics_prometheus/main.py            # demo: serve, call, scrape, print, exit
    python examples/metrics_prometheus/main.py --serve    # keep serving for a real Prometheus

The gRPC server has ServerMetricsMiddleware, the channel calling it
ClientMetricsMiddleware. OpenTelemetry's PrometheusMetricReader turns the
``rpc.server.*`` / ``rpc.client.*`` instruments into Prometheus metrics that
prometheus_client serves at ``http://HOST:METRICS_PORT/metrics``. In demo mode
the script makes a few calls (one of them failing), fetches that page itself
and prints the RPC metrics it found.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import urllib.request
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
if ROOT not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, ROOT)

try:
    from opentelemetry import metrics
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import Resource
    from prometheus_client import start_http_server
except ImportError as exc:  # pragma: no cover - depends on what is installed
    sys.exit(f"{exc}\nthis example needs: pip install 'grpcasgi[otel]' opentelemetry-sdk opentelemetry-exporter-prometheus")

from google.protobuf.wrappers_pb2 import StringValue  # noqa: E402

from grpcasgi import Cardinality, GRPCError, Handler, Middleware, Status  # noqa: E402
from grpcasgi.client import Channel, UnaryStreamMethod, UnaryUnaryMethod  # noqa: E402
from grpcasgi.middleware.metrics import ClientMetricsMiddleware, ServerMetricsMiddleware  # noqa: E402
from grpcasgi.server import Server  # noqa: E402
from grpcasgi.utils import graceful_exit  # noqa: E402


class Greeter:
    async def hello(self, stream: Any) -> None:
        request = await stream.recv_message()
        if not request.value:
            raise GRPCError(Status.INVALID_ARGUMENT, "name is required")
        await stream.send_message(StringValue(value=f"Hello, {request.value}!"))

    async def hellos(self, stream: Any) -> None:
        request = await stream.recv_message()
        for greeting in ("Hello", "Bonjour", "Hola"):
            await stream.send_message(StringValue(value=f"{greeting}, {request.value}!"))

    def __mapping__(self) -> dict[str, Handler]:
        return {
            "/demo.Greeter/SayHello": Handler(self.hello, Cardinality.UNARY_UNARY, StringValue, StringValue),
            "/demo.Greeter/SayHellos": Handler(self.hellos, Cardinality.UNARY_STREAM, StringValue, StringValue),
        }


def setup_metrics(host: str, port: int) -> int:
    """Route OpenTelemetry metrics to a Prometheus scrape endpoint; returns its port."""
    reader = PrometheusMetricReader()
    provider = MeterProvider(resource=Resource.create({"service.name": "greeter"}), metric_readers=[reader])
    metrics.set_meter_provider(provider)
    server, _thread = start_http_server(port, addr=host)
    return int(server.server_port)


async def demo(host: str, grpc_port: int, metrics_port: int, serve: bool) -> int:
    # Middleware created after set_meter_provider() use the global provider.
    server = Server([Greeter()], middleware=[Middleware(ServerMetricsMiddleware)])
    if serve:
        # SIGTERM / Ctrl-C close the server gracefully and exit 0. The handlers
        # are installed before the address is printed, so whoever waits for
        # that line may signal at once.
        with graceful_exit([server]):
            await server.start(host, grpc_port)
            print(f"gRPC on {host}:{server.port}, metrics on http://{host}:{metrics_port}/metrics", flush=True)
            await server.wait_closed()
        return 0
    await server.start(host, grpc_port)
    print(f"gRPC on {host}:{server.port}, metrics on http://{host}:{metrics_port}/metrics", flush=True)
    try:
        async with Channel(host, server.port, middleware=[Middleware(ClientMetricsMiddleware)]) as channel:
            hello = UnaryUnaryMethod(channel, "/demo.Greeter/SayHello", StringValue, StringValue)
            for name in ("Ada", "Grace", "Linus"):
                print((await hello(StringValue(value=name))).value)
            print([r.value for r in await UnaryStreamMethod(channel, "/demo.Greeter/SayHellos", StringValue, StringValue)(StringValue(value="Guido"))])
            try:
                await hello(StringValue(value=""))
            except GRPCError as exc:
                print(f"failed as expected: {exc}")
        page = await asyncio.to_thread(_fetch, f"http://{host}:{metrics_port}/metrics")
    finally:
        server.close()
        await server.wait_closed()
    lines = [line for line in page.splitlines() if line.startswith(("rpc_", "grpcasgi_"))]
    # A summary: calls by method and status, and what is in flight (all zero now).
    for line in lines:
        if "_duration_milliseconds_count{" in line or "_active_calls{" in line:
            print(line)
    print(f"({len(lines)} rpc_*/grpcasgi_* samples in all)")
    return 0 if lines else 1


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="gRPC port (0: any free port)")
    parser.add_argument("--metrics-port", type=int, default=0, help="Prometheus port (0: any free port)")
    parser.add_argument("--serve", action="store_true", help="keep serving instead of running the demo")
    args = parser.parse_args()
    metrics_port = setup_metrics(args.host, args.metrics_port)
    return asyncio.run(demo(args.host, args.port, metrics_port, args.serve))


if __name__ == "__main__":
    sys.exit(main())
