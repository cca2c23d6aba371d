"""Server CPU per unary call spent in the built-in middleware, measured in-process.

    python benchmarks/middleware_profile.py                     # every setup, about 20 s
    python benchmarks/middleware_profile.py --only none,full    # some setups
    python benchmarks/middleware_profile.py --profile full      # cProfile, top functions
    python benchmarks/middleware_profile.py --callgrind none,full   # instructions per call (valgrind)

``middleware_overhead.py`` measures client and server together over a real
socket, where the transport dominates and a shared machine's noise hides a
few microseconds. This harness removes everything but the server's call
model: each call gets a fresh scope from :func:`grpcasgi.call.make_scope`
(the function both runtimes use) and runs through :class:`ServerCall`'s
lifecycle (``_run``: current-call context variable, deadline timer,
exactly-one-end) and the middleware stack to the handler, with ``receive``
and ``send`` answered from memory. The handler is the benchmark's echo
handler. What is left is exactly what middleware adds, so the difference to
the ``none`` setup is each middleware's cost per call.

Setups are interleaved in rounds so that load drifts affect them alike, and
each reports the *minimum* over rounds of process CPU time per call (the
least disturbed round). ``--callgrind`` instead counts instructions with
``valgrind --tool=callgrind``: two runs of different lengths per setup, so
start-up cancels out; counts repeat to within a fraction of a percent
whatever else the machine is doing, which makes small optimisations
measurable. OpenTelemetry runs in no-op mode (only the API, no SDK
configured), and the access log is enabled at INFO into a ``NullHandler``,
as in ``middleware_overhead.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import logging
import os
import pstats
import re
import subprocess
import sys
import time
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for entry in (ROOT, HERE):
    if entry not in sys.path:
        sys.path.insert(0, entry)

from google.protobuf.wrappers_pb2 import StringValue  # noqa: E402

from grpcasgi import Middleware  # noqa: E402
from grpcasgi.call import ServerCall, build_stack, endpoint, make_scope  # noqa: E402
from grpcasgi.middleware import (  # noqa: E402
    SYSTEM_SERVICES,
    AuthMiddleware,
    BearerTokenScheme,
    ConcurrencyLimitMiddleware,
    DeadlineMiddleware,
    ErrorMappingMiddleware,
    LoggingMiddleware,
    RateLimitMiddleware,
    ValidationMiddleware,
    select,
)
from grpcasgi.peer import Peer  # noqa: E402
from grpcasgi.protocol.headers import RequestHead  # noqa: E402
from grpcasgi.protocol.status import Status  # noqa: E402
from grpcasgi.routing import Router  # noqa: E402
from grpcasgi.types import ReceiveEvent, SendEvent  # noqa: E402
from middleware_overhead import PATH, SERVER_MIDDLEWARE, TOKEN, Echo  # noqa: E402


def _otel(name: str) -> Callable[[], list[Middleware]]:
    def entries() -> list[Middleware]:
        from grpcasgi.middleware.metrics import ServerMetricsMiddleware
        from grpcasgi.middleware.tracing import ServerTracingMiddleware

        cls = {"tracing": ServerTracingMiddleware, "metrics": ServerMetricsMiddleware}[name]
        return [Middleware(cls)]

    return entries


_AUTH = Middleware(AuthMiddleware, schemes=[BearerTokenScheme(tokens={TOKEN: "bench"})])

#: Setup name -> the server's middleware list. "full" is middleware_overhead.py's stack.
SETUPS: dict[str, Callable[[], list[Middleware]]] = {
    "none": lambda: [],
    "logging": lambda: [Middleware(LoggingMiddleware)],
    "auth": lambda: [_AUTH],
    "deadlines": lambda: [Middleware(DeadlineMiddleware, default=5.0)],
    "tracing": _otel("tracing"),
    "metrics": _otel("metrics"),
    "full": lambda: list(SERVER_MIDDLEWARE),
    # Not part of the stack; measured so that no built-in is left unprofiled.
    "logging(off)": lambda: [Middleware(LoggingMiddleware, logger=OFF_LOGGER)],
    "select(auth)": lambda: [select(_AUTH, exclude=SYSTEM_SERVICES)],
    "errors": lambda: [Middleware(ErrorMappingMiddleware)],
    "concurrency": lambda: [Middleware(ConcurrencyLimitMiddleware, max_in_flight=100)],
    "ratelimit": lambda: [Middleware(RateLimitMiddleware, rate=1e9, burst=10**9)],
    "validation": lambda: [Middleware(ValidationMiddleware, validators={StringValue: lambda message: None})],
}
MAIN_SETUPS = ("none", "logging", "auth", "deadlines", "tracing", "metrics", "full")

#: How often the driver lets the event loop run (it clears cancelled deadline timers).
YIELD_EVERY = 64


class MemoryCall(ServerCall):
    """A server call whose request is one message and whose response goes nowhere."""

    __slots__ = ("_sent_request", "ended_status")

    def __init__(self, scope: Any) -> None:
        super().__init__(scope)
        self._sent_request = False
        self.ended_status: Status | None = None

    async def receive(self) -> ReceiveEvent:
        if not self._sent_request:
            self._sent_request = True
            return {"type": "grpc.request.message", "message": StringValue(value="hello"), "size": 7}
        return {"type": "grpc.request.end"}

    async def send(self, event: SendEvent) -> None:
        if event["type"] == "grpc.response.start":
            self.response_started = True
        elif event["type"] == "grpc.response.end":
            self.response_ended = True
            self.ended_status = event["status"]


class Bench:
    """One setup: its stack, and the per-call inputs every setup shares."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.app = build_stack(SETUPS[name](), endpoint)
        self.router = Router([Echo()])
        self.peer = Peer(("127.0.0.1", 50514))
        self.metadata = [("authorization", f"Bearer {TOKEN}")]

    def head(self) -> RequestHead:
        # What the parser produces for our Channel's request (new per call, as in the server).
        return RequestHead(
            path=PATH,
            codec="proto",
            content_type=b"application/grpc",
            timeout=None,
            encoding=None,
            accept_encoding=("gzip", "deflate", "identity"),
            user_agent="grpc-python-grpcasgi/1.0",
            authority="127.0.0.1:50051",
            metadata=list(self.metadata),
        )

    async def run(self, calls: int) -> None:
        app, router, peer = self.app, self.router, self.peer
        for i in range(calls):
            call = MemoryCall(make_scope(self.head(), router, peer, "bundled"))
            await call._run(app)
            if call.ended_status is not Status.OK:
                raise RuntimeError(f"{self.name}: call ended {call.ended_status}")
            if i % YIELD_EVERY == 0:
                await asyncio.sleep(0)


#: An access logger switched off (level above ERROR), for the "logging(off)" setup.
OFF_LOGGER = "bench.access.off"


def quiet_access_log() -> None:
    access = logging.getLogger("grpcasgi.access")
    access.setLevel(logging.INFO)
    access.addHandler(logging.NullHandler())
    access.propagate = False
    logging.getLogger(OFF_LOGGER).setLevel(logging.CRITICAL)


async def measure(names: list[str], calls: int, rounds: int) -> dict[str, float]:
    """Minimum over ``rounds`` of process CPU microseconds per call, per setup."""
    benches = [Bench(name) for name in names]
    for bench in benches:
        await bench.run(min(calls, 500))  # warm-up: caches, first-use imports
    best = {name: float("inf") for name in names}
    for _ in range(rounds):
        for bench in benches:
            gc.collect()
            cpu = time.process_time()
            await bench.run(calls)
            best[bench.name] = min(best[bench.name], (time.process_time() - cpu) / calls * 1e6)
    return best


def report(title: str, unit: str, values: dict[str, float], decimals: int) -> None:
    base = values.get("none")
    print(title)
    print(f"  {'setup':<14}{unit:>14}{'added':>12}{'ratio':>8}")
    for name, value in values.items():
        added = f"{value - base:+.{decimals}f}" if base is not None else ""
        ratio = f"{value / base:.2f}" if base else ""
        print(f"  {name:<14}{value:14.{decimals}f}{added:>12}{ratio:>8}")


def profile(name: str, calls: int, top: int) -> None:
    bench = Bench(name)
    asyncio.run(bench.run(500))
    profiler = cProfile.Profile()
    profiler.enable()
    asyncio.run(bench.run(calls))
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    print(f"cProfile of {calls} calls, setup {name!r} (sorted by own time):")
    print(out.getvalue())


_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def instructions(name: str, calls: int) -> int:
    """Instructions valgrind counts for a run of ``calls`` calls (plus start-up)."""
    proc = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            os.path.abspath(__file__),
            "--single",
            name,
            "--calls",
            str(calls),
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},  # the same dict layouts in every run
    )
    match = _COLLECTED.search(proc.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{proc.stderr[-2000:]}")
    return int(match.group(1))


def callgrind(names: list[str], calls: int) -> None:
    """Instructions per call: the difference between a run of 2*calls and one of calls calls."""
    per_call = {}
    for name in names:
        short, long = instructions(name, calls), instructions(name, 2 * calls)
        per_call[name] = (long - short) / calls
    report(f"instructions per call (valgrind callgrind, {calls} vs {2 * calls} calls):", "instr/call", per_call, 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help=f"comma-separated setups (default: {','.join(MAIN_SETUPS)}; 'all' for every one)")
    parser.add_argument("--calls", type=int, default=5000, help="calls per round (default 5000)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds per setup (default 7)")
    parser.add_argument("--profile", metavar="SETUP", help="cProfile one setup instead of timing")
    parser.add_argument("--top", type=int, default=30, help="functions shown by --profile (default 30)")
    parser.add_argument("--callgrind", metavar="SETUPS", help="count instructions per call under valgrind")
    parser.add_argument("--single", metavar="SETUP", help=argparse.SUPPRESS)  # one run, for --callgrind
    args = parser.parse_args(argv)
    quiet_access_log()
    if args.single:
        bench = Bench(args.single)
        asyncio.run(bench.run(args.calls))
        return 0
    if args.profile:
        profile(args.profile, args.calls, args.top)
        return 0
    if args.callgrind:
        names = list(SETUPS) if args.callgrind == "all" else args.callgrind.split(",")
        callgrind(names, min(args.calls, 1000))
        return 0
    names = list(MAIN_SETUPS) if not args.only else list(SETUPS) if args.only == "all" else args.only.split(",")
    unknown = [name for name in names if name not in SETUPS]
    if unknown:
        parser.error(f"unknown setup(s) {unknown}; known: {', '.join(SETUPS)}")
    if "none" not in names:
        names.insert(0, "none")
    best = asyncio.run(measure(names, args.calls, args.rounds))
    report(
        f"server CPU per unary call, in-process (no sockets), min of {args.rounds} rounds x {args.calls} calls:",
        "us/call",
        best,
        1,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
