"""What a realistic middleware stack costs per unary call, client and server together.

    python benchmarks/middleware_overhead.py                 # about 10 seconds
    python benchmarks/middleware_overhead.py --count 20      # a quick smoke run

One process, one event loop, one loopback connection: a client calling a
server, first with no middleware at all, then with

* server: LoggingMiddleware (access log at INFO into a NullHandler),
  AuthMiddleware (bearer token), DeadlineMiddleware (default 5 s),
  ServerTracingMiddleware, ServerMetricsMiddleware;
* client: CallCredentialsMiddleware (the bearer token),
  ClientTracingMiddleware, ClientMetricsMiddleware;

with the OpenTelemetry API in no-op mode (no SDK configured), which is what
an application pays before it decides to export anything. The two setups
alternate in short rounds so that machine load drifts affect both alike.
Prints unary calls/s for each and their ratio; no figure is asserted
anywhere (the smoke test only checks that it runs).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from google.protobuf.wrappers_pb2 import StringValue  # noqa: E402

from grpcasgi import Cardinality, Handler, Middleware  # noqa: E402
from grpcasgi.client import Channel, UnaryUnaryMethod  # noqa: E402
from grpcasgi.middleware import AuthMiddleware, BearerTokenScheme, DeadlineMiddleware, LoggingMiddleware  # noqa: E402
from grpcasgi.middleware.credentials import CallCredentialsMiddleware  # noqa: E402
from grpcasgi.middleware.metrics import ClientMetricsMiddleware, ServerMetricsMiddleware  # noqa: E402
from grpcasgi.middleware.tracing import ClientTracingMiddleware, ServerTracingMiddleware  # noqa: E402
from grpcasgi.server import Server  # noqa: E402

PATH = "/bench.Echo/Unary"
TOKEN = "bench-token"


class Echo:
    async def unary(self, stream: Any) -> None:
        request = await stream.recv_message()
        await stream.send_message(StringValue(value=request.value))

    def __mapping__(self) -> dict[str, Handler]:
        return {PATH: Handler(self.unary, Cardinality.UNARY_UNARY, StringValue, StringValue)}


SERVER_MIDDLEWARE = [
    Middleware(LoggingMiddleware),
    Middleware(AuthMiddleware, schemes=[BearerTokenScheme(tokens={TOKEN: "bench"})]),
    Middleware(DeadlineMiddleware, default=5.0),
    Middleware(ServerTracingMiddleware),
    Middleware(ServerMetricsMiddleware),
]
CLIENT_MIDDLEWARE = [
    Middleware(CallCredentialsMiddleware, token=TOKEN),
    Middleware(ClientTracingMiddleware),
    Middleware(ClientMetricsMiddleware),
]


async def measure(
    method: UnaryUnaryMethod[Any, Any], *, seconds: float | None, count: int | None, concurrency: int
) -> tuple[float, float]:
    """(calls per second, CPU microseconds per call) over ``seconds`` (or ``count`` calls)."""
    request = StringValue(value="hello")
    done = 0
    cpu = time.process_time()
    start = time.perf_counter()
    stop = start + seconds if seconds is not None else None

    async def caller(share: int | None) -> None:
        nonlocal done
        while True:
            if share is not None:
                if share == 0:
                    return
                share -= 1
            elif stop is not None and time.perf_counter() >= stop:
                return
            await method(request)
            done += 1

    shares = [None] * concurrency if count is None else [count // concurrency + (i < count % concurrency) for i in range(concurrency)]
    await asyncio.gather(*(caller(share) for share in shares))
    elapsed = time.perf_counter() - start
    return done / elapsed, (time.process_time() - cpu) / max(done, 1) * 1e6


async def main(args: argparse.Namespace) -> int:
    access = logging.getLogger("grpcasgi.access")
    access.setLevel(logging.INFO)
    access.addHandler(logging.NullHandler())
    access.propagate = False
    setups = {
        "none": (Server([Echo()]), []),
        "full": (Server([Echo()], middleware=SERVER_MIDDLEWARE), CLIENT_MIDDLEWARE),
    }
    methods = {}
    channels = []
    for name, (server, client_mw) in setups.items():
        await server.start("127.0.0.1", 0)
        channel = Channel("127.0.0.1", server.port, middleware=client_mw)
        channels.append(channel)
        methods[name] = UnaryUnaryMethod(channel, PATH, StringValue, StringValue)
        await methods[name](StringValue(value="warm-up"))
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in setups}
    try:
        for _ in range(args.rounds):
            for name, method in methods.items():
                rate = await measure(
                    method,
                    seconds=None if args.count else args.seconds / (2 * args.rounds),
                    count=args.count,
                    concurrency=args.concurrency,
                )
                results[name].append(rate)
    finally:
        for channel in channels:
            await channel.__aexit__(None, None, None)
        for server, _ in setups.values():
            server.close()
            await server.wait_closed()
    # Best round: the least disturbed by other processes. CPU time per call
    # (client and server together) is the steadier figure on a shared machine.
    rate = {name: max(r for r, _ in rounds) for name, rounds in results.items()}
    cpu = {name: min(c for _, c in rounds) for name, rounds in results.items()}
    print(f"unary calls, {args.concurrency} concurrent caller(s), best of {args.rounds} round(s):")
    print(f"  {'':<54}{'calls/s':>9}{'CPU us/call':>13}")
    print(f"  {'no middleware':<54}{rate['none']:9.0f}{cpu['none']:13.1f}")
    print(f"  {'auth+deadlines+tracing+metrics+logging (OTel no-op)':<54}{rate['full']:9.0f}{cpu['full']:13.1f}")
    print(f"ratio (with / without): {rate['full'] / rate['none']:.2f} calls/s, {cpu['full'] / cpu['none']:.2f} CPU per call")
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="total measuring time (default 10)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per setup (default 5)")
    parser.add_argument("--concurrency", type=int, default=4, help="concurrent callers (default 4)")
    parser.add_argument("--count", type=int, default=None, help="calls per round instead of a duration")
    args = parser.parse_args(argv)
    if args.count is not None and args.count < args.concurrency:
        args.concurrency = max(1, args.count)
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
