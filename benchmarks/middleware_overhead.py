"""What a realistic middleware stack costs per unary call, over a real loopback socket.

    python benchmarks/middleware_overhead.py                 # about 15 seconds
    python benchmarks/middleware_overhead.py --count 20      # a quick smoke run

Each server runs in its own process, so that its CPU time per call is
measured apart from the client's; the client (this process, one event loop,
one connection per server, 4 concurrent callers) drives three setups:

* ``none``: no middleware anywhere;
* ``server``: the server runs LoggingMiddleware (access log at INFO into a
  NullHandler), AuthMiddleware (bearer token), DeadlineMiddleware (default
  5 s), ServerTracingMiddleware and ServerMetricsMiddleware -- the stack of
  issue 3; the client has none;
* ``full``: that server, and a client with CallCredentialsMiddleware (the
  bearer token), ClientTracingMiddleware and ClientMetricsMiddleware;

with the OpenTelemetry API in no-op mode (no SDK configured), which is what
an application pays before it decides to export anything. The setups
alternate in short rounds so that load drifts affect them alike; each figure
is the median over rounds (3 by default), each ratio the median of the
per-round ratios to ``none``. On a machine shared with other work, CPU time per
call is the steadier figure: calls/s depends on what else runs, CPU per call
much less.

With ``--h2load``, the load comes from h2load (nghttp2's C load generator,
``apt-get install nghttp2-client``) instead: 4 connections x 10 concurrent
streams of the same request, so that the server process is saturated and its
calls/s is the server's throughput, with and without the stack (the
measure of the issue's goal); ``--only-server logging,deadlines`` runs only
those entries of the server stack, to see what each costs at saturation.
``middleware_profile.py`` measures the server stack in-process,
call by call; no figure is asserted anywhere (the smoke test only checks that
this runs).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
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
from grpcasgi.server import Server  # noqa: E402

PATH = "/bench.Echo/Unary"
TOKEN = "bench-token"


class Echo:
    async def unary(self, stream: Any) -> None:
        request = await stream.recv_message()
        await stream.send_message(StringValue(value=request.value))

    def __mapping__(self) -> dict[str, Handler]:
        return {PATH: Handler(self.unary, Cardinality.UNARY_UNARY, StringValue, StringValue)}


def _tracing(side: str) -> Middleware:
    from grpcasgi.middleware import tracing

    return Middleware(getattr(tracing, f"{side}TracingMiddleware"))


def _metrics(side: str) -> Middleware:
    from grpcasgi.middleware import metrics

    return Middleware(getattr(metrics, f"{side}MetricsMiddleware"))


#: The server stack of issue 3 (middleware_profile.py's "full" setup).
SERVER_MIDDLEWARE = [
    Middleware(LoggingMiddleware),
    Middleware(AuthMiddleware, schemes=[BearerTokenScheme(tokens={TOKEN: "bench"})]),
    Middleware(DeadlineMiddleware, default=5.0),
    _tracing("Server"),
    _metrics("Server"),
]
CLIENT_MIDDLEWARE = [
    Middleware(CallCredentialsMiddleware, token=TOKEN),
    _tracing("Client"),
    _metrics("Client"),
]

#: The request metadata CallCredentialsMiddleware adds; the setups without it send it themselves,
#: so that every setup sends the same request.
AUTH_METADATA = {"authorization": f"Bearer {TOKEN}"}

#: setup -> (server process, client middleware, metadata of each call)
SETUPS: dict[str, tuple[str, list[Middleware], dict[str, str] | None]] = {
    "none": ("plain", [], AUTH_METADATA),
    "server": ("middleware", [], AUTH_METADATA),
    "full": ("middleware", CLIENT_MIDDLEWARE, None),
}
LABELS = {
    "none": "no middleware",
    "server": "server: auth+deadlines+tracing+metrics+logging",
    "full": "server stack + client creds+tracing+metrics",
}


def quiet_access_log() -> None:
    access = logging.getLogger("grpcasgi.access")
    access.setLevel(logging.INFO)
    access.addHandler(logging.NullHandler())
    access.propagate = False


# -- the server process ---------------------------------------------------------


#: Names of SERVER_MIDDLEWARE's entries, for --only-server (measuring some of the stack).
STACK_NAMES = ("logging", "auth", "deadlines", "tracing", "metrics")


def server_stack(names: str | None) -> list[Middleware]:
    """SERVER_MIDDLEWARE, or the entries named (comma-separated, in the stack's order)."""
    if not names:
        return list(SERVER_MIDDLEWARE)
    wanted = names.split(",")
    unknown = set(wanted) - set(STACK_NAMES)
    if unknown:
        raise SystemExit(f"unknown middleware {sorted(unknown)}; known: {', '.join(STACK_NAMES)}")
    return [entry for name, entry in zip(STACK_NAMES, SERVER_MIDDLEWARE) if name in wanted]


async def serve(kind: str, names: str | None = None) -> None:
    """Serve until stdin closes; print the port, then the process CPU time for each line read."""
    quiet_access_log()
    server = Server([Echo()], middleware=server_stack(names) if kind == "middleware" else [])
    await server.start("127.0.0.1", 0)
    print(server.port, flush=True)
    loop = asyncio.get_running_loop()
    try:
        while await loop.run_in_executor(None, sys.stdin.readline):
            print(time.process_time(), flush=True)
    finally:
        server.close()
        await server.wait_closed()


class ServerProcess:
    """A ``--serve`` child: its port, and its CPU time on request.

    With ``callgrind=True`` it runs under ``valgrind --tool=callgrind`` and
    :meth:`stop` returns valgrind's report (with the instruction count).
    """

    def __init__(
        self, kind: str, *, callgrind: bool = False, cpu: int | None = None, names: str | None = None
    ) -> None:
        command = [sys.executable, os.path.abspath(__file__), "--serve", kind]
        if names:
            command += ["--only-server", names]
        if cpu is not None:
            command = [*_pinned(cpu), *command]
        env = None
        if callgrind:
            command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *command]
            env = {**os.environ, "PYTHONHASHSEED": "0"}  # the same dict layouts in every run
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if callgrind else None,
            text=True,
            env=env,
        )
        self.port = int(self._line())

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"benchmark server exited with {self.proc.wait()}")
        return line

    def cpu(self) -> float:
        assert self.proc.stdin is not None
        self.proc.stdin.write("cpu\n")
        self.proc.stdin.flush()
        return float(self._line())

    def stop(self, timeout: float = 10) -> str:
        """Stop the server (it exits when its stdin closes); its stderr if captured."""
        try:
            _, err = self.proc.communicate(timeout=timeout)  # closes stdin first
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err or ""


# -- the client -------------------------------------------------------------------


async def measure(
    method: UnaryUnaryMethod[Any, Any],
    server: ServerProcess,
    *,
    metadata: dict[str, str] | None,
    seconds: float | None,
    count: int | None,
    concurrency: int,
) -> tuple[float, float, float]:
    """(calls/s, client CPU us/call, server CPU us/call) over ``seconds`` (or ``count`` calls)."""
    request = StringValue(value="hello")
    done = 0
    server_cpu = server.cpu()
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
            await method(request, metadata=metadata)
            done += 1

    shares: list[int | None]
    if count is None:
        shares = [None] * concurrency
    else:
        shares = [count // concurrency + (i < count % concurrency) for i in range(concurrency)]
    await asyncio.gather(*(caller(share) for share in shares))
    elapsed = time.perf_counter() - start
    client_cpu = time.process_time() - cpu
    served = server.cpu() - server_cpu
    calls = max(done, 1)
    return done / elapsed, client_cpu / calls * 1e6, served / calls * 1e6


async def run(args: argparse.Namespace) -> dict[str, list[tuple[float, float, float]]]:
    servers = {kind: ServerProcess(kind) for kind in {kind for kind, _, _ in SETUPS.values()}}
    channels: list[Channel] = []
    methods: dict[str, UnaryUnaryMethod[Any, Any]] = {}
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in SETUPS}
    try:
        for name, (kind, client_mw, metadata) in SETUPS.items():
            channel = Channel("127.0.0.1", servers[kind].port, middleware=client_mw)
            channels.append(channel)
            methods[name] = UnaryUnaryMethod(channel, PATH, StringValue, StringValue)
            for _ in range(args.warmup):
                await methods[name](StringValue(value="warm-up"), metadata=metadata)
        for _ in range(args.rounds):
            for name, method in methods.items():
                kind, _, metadata = SETUPS[name]
                results[name].append(
                    await measure(
                        method,
                        servers[kind],
                        metadata=metadata,
                        seconds=None if args.count else args.seconds / (len(SETUPS) * args.rounds),
                        count=args.count,
                        concurrency=args.concurrency,
                    )
                )
    finally:
        for channel in channels:
            await channel.__aexit__(None, None, None)
        for server in servers.values():
            server.stop()
    return results


# -- h2load: the server saturated -----------------------------------------------------

_H2LOAD_DONE = re.compile(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored")
_H2LOAD_DATA = re.compile(r"\((\d+)\) data")


def _pinned(cpu: int) -> list[str]:
    """``taskset -c cpu`` when there are two CPUs or more to keep server and load apart."""
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(cpu)]
    return []


def h2load_round(server: ServerProcess, seconds: float, body: Path) -> tuple[float, float]:
    """(calls/s, server CPU us/call) of one h2load run of ``seconds`` against ``server``."""
    command = [
        *_pinned(1), "h2load", "-t", "1", "-c", "4", "-m", "10", "-D", f"{int(seconds * 1000)}ms",
        "-H", "content-type: application/grpc", "-H", "te: trailers",
        "-H", f"authorization: Bearer {TOKEN}", "-d", str(body), f"http://127.0.0.1:{server.port}{PATH}",
    ]  # fmt: skip
    before = server.cpu()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    served = server.cpu() - before
    done, data = _H2LOAD_DONE.search(proc.stdout), _H2LOAD_DATA.search(proc.stdout)
    if proc.returncode != 0 or done is None or data is None:
        raise RuntimeError(f"h2load failed ({proc.returncode}): {(proc.stderr or proc.stdout)[-500:]}")
    succeeded, failed = int(done.group(1)), int(done.group(2)) + int(done.group(3))
    # A gRPC error is HTTP 200 too, but its response has no message: check that every call got one.
    if failed or int(data.group(1)) < succeeded * len(_request_body()):
        raise RuntimeError(f"h2load: {failed} failed, or calls answered without a message: {proc.stdout[-500:]}")
    return succeeded / seconds, served / max(succeeded, 1) * 1e6


def _request_body() -> bytes:
    """One length-prefixed gRPC message: the request every setup answers."""
    payload = StringValue(value="hello").SerializeToString()
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def run_h2load(args: argparse.Namespace) -> dict[str, list[tuple[float, float]]]:
    if shutil.which("h2load") is None:
        raise SystemExit("h2load not found: apt-get install nghttp2-client (benchmarks/run.sh installs it)")
    body = Path(tempfile.mkdtemp()) / "request.bin"
    body.write_bytes(_request_body())
    servers = {
        name: ServerProcess(kind, cpu=0, names=args.only_server)
        for name, kind in (("none", "plain"), ("server", "middleware"))
    }
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in servers}
    try:
        for server in servers.values():
            h2load_round(server, 1.0, body)  # warm-up
        for _ in range(args.rounds):
            for name, server in servers.items():
                results[name].append(h2load_round(server, args.seconds / (2 * args.rounds), body))
    finally:
        for server in servers.values():
            server.stop()
        body.unlink()
        body.parent.rmdir()
    return results


def report_h2load(results: dict[str, list[tuple[float, float]]], args: argparse.Namespace) -> None:
    if args.verbose:
        for name, rounds in results.items():
            line = "  ".join(f"{rate:6.0f}/s {cpu:6.1f}" for rate, cpu in rounds)
            print(f"  {name:<8}{line}   (per round: calls/s, server CPU us/call)")
    print(f"unary calls/s of a saturated server (h2load: 4 connections x 10 streams), median of {args.rounds} rounds;")
    print("OpenTelemetry no-op:")
    print(f"  {'':<50}{'calls/s':>9}{'server CPU':>12}")
    labels = dict(LABELS)
    if args.only_server:
        labels["server"] = f"server: {args.only_server.replace(',', '+')}"
    for name in results:
        rate = statistics.median(r[0] for r in results[name])
        cpu = statistics.median(r[1] for r in results[name])
        print(f"  {labels[name]:<50}{rate:9.0f}{cpu:9.1f} us")
    rates = statistics.median(r[0] / b[0] for r, b in zip(results["server"], results["none"]))
    cpus = statistics.median(r[1] / b[1] for r, b in zip(results["server"], results["none"]))
    print(f"ratio (server / none): {rates:.3f} calls/s ({(1 - rates) * 100:.1f} % loss), {cpus:.3f} server CPU per call")


# -- instruction counts ---------------------------------------------------------------

_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


async def _call_many(port: int, metadata: dict[str, str] | None, calls: int, concurrency: int) -> None:
    async with Channel("127.0.0.1", port) as channel:
        method: UnaryUnaryMethod[StringValue, StringValue] = UnaryUnaryMethod(channel, PATH, StringValue, StringValue)
        request = StringValue(value="hello")

        async def caller(share: int) -> None:
            for _ in range(share):
                await method(request, metadata=metadata)

        await asyncio.gather(*(caller(calls // concurrency + (i < calls % concurrency)) for i in range(concurrency)))


def server_instructions(kind: str, calls: int, args: argparse.Namespace) -> int:
    """Instructions the server process executes for start-up, warm-up and ``calls`` calls."""
    server = ServerProcess(kind, callgrind=True)
    try:
        asyncio.run(_call_many(server.port, AUTH_METADATA, args.warmup + calls, args.concurrency))
    finally:
        report = server.stop(timeout=600)
    match = _COLLECTED.search(report)
    if match is None:
        raise RuntimeError(f"no instruction count in valgrind's report:\n{report[-2000:]}")
    return int(match.group(1))


def callgrind(args: argparse.Namespace) -> None:
    """Server instructions per call: runs of ``calls`` and ``2 * calls`` calls, so start-up cancels out."""
    calls = args.callgrind
    per_call = {}
    for name, kind in (("none", "plain"), ("server", "middleware")):
        short = server_instructions(kind, calls, args)
        long = server_instructions(kind, 2 * calls, args)
        per_call[name] = (long - short) / calls
    print(f"server instructions per unary call over a socket (valgrind callgrind, {calls} vs {2 * calls} calls,")
    print(f"{args.concurrency} concurrent callers; user-space instructions only, the kernel's socket work is not counted):")
    print(f"  {LABELS['none']:<50}{per_call['none']:10.0f}")
    added = per_call["server"] - per_call["none"]
    print(f"  {LABELS['server']:<50}{per_call['server']:10.0f}  (+{added:.0f}, ratio {per_call['server'] / per_call['none']:.3f})")


def report(results: dict[str, list[tuple[float, float, float]]], args: argparse.Namespace) -> None:
    def median(name: str, index: int) -> float:
        return statistics.median(r[index] for r in results[name])

    def ratio(name: str, index: int) -> float:
        return statistics.median(r[index] / b[index] for r, b in zip(results[name], results["none"]))

    if args.verbose:
        for name in SETUPS:
            rounds = "  ".join(f"{rate:6.0f}/s {server:6.1f} {client:6.1f}" for rate, client, server in results[name])
            print(f"  {name:<8}{rounds}   (per round: calls/s, server and client CPU us/call)")
    print(f"unary calls, {args.concurrency} concurrent caller(s), median of {args.rounds} round(s); OpenTelemetry no-op:")
    print(f"  {'':<50}{'calls/s':>9}{'server CPU':>12}{'client CPU':>12}")
    print(f"  {'':<50}{'':>9}{'us/call':>12}{'us/call':>12}")
    for name in SETUPS:
        print(f"  {LABELS[name]:<50}{median(name, 0):9.0f}{median(name, 2):12.1f}{median(name, 1):12.1f}")
    for name in ("server", "full"):
        print(
            f"ratio ({name} / none): {ratio(name, 0):.2f} calls/s, {ratio(name, 2):.2f} server CPU per call, "
            f"{ratio(name, 1):.2f} client CPU per call"
        )
    # The line the smoke test (and older notes) look for: the whole stack against none.
    print(f"ratio (with / without): {ratio('full', 0):.2f} calls/s, {ratio('server', 2):.2f} server CPU per call")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0, help="total measuring time (default 15)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per setup (default 3)")
    parser.add_argument("--concurrency", type=int, default=4, help="concurrent callers (default 4)")
    parser.add_argument("--count", type=int, default=None, help="calls per round instead of a duration")
    parser.add_argument("--warmup", type=int, default=200, help="calls per setup before measuring (default 200)")
    parser.add_argument("--verbose", action="store_true", help="print every round's figures too")
    parser.add_argument(
        "--callgrind",
        type=int,
        metavar="CALLS",
        help="instead, count the server's instructions per call under valgrind (e.g. 500; takes minutes)",
    )
    parser.add_argument(
        "--h2load",
        action="store_true",
        help="load from h2load (4 connections x 10 streams) so that the server is saturated: its calls/s",
    )
    parser.add_argument(
        "--only-server",
        metavar="NAMES",
        help=f"with --h2load: run only these of the server stack (comma-separated: {','.join(STACK_NAMES)})",
    )
    parser.add_argument("--serve", choices=("plain", "middleware"), help=argparse.SUPPRESS)  # the server process
    args = parser.parse_args(argv)
    if args.count is not None:
        args.concurrency = max(1, min(args.concurrency, args.count))
        args.warmup = min(args.warmup, args.count)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.serve:
        asyncio.run(serve(args.serve, args.only_server))
        return 0
    if args.callgrind:
        callgrind(args)
        return 0
    if args.h2load:
        report_h2load(run_h2load(args), args)
        return 0
    report(asyncio.run(run(args)), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
