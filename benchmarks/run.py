"""Benchmark grpcasgi against grpclib and grpcio on this machine; write RESULTS.md.

    bash benchmarks/run.sh            # installs what is missing, then runs this
    python benchmarks/run.py          # full run (~8 min): 3 runs, medians, RESULTS.md
    python benchmarks/run.py --smoke  # seconds: every server and metric once, tiny counts

Each server runs in its own process pinned to CPU 0 (``taskset -c 0``); the
load generator (h2load, ``rawh2.py`` or ``clients.py``) runs pinned to CPU 1.
Within one run every server is measured in turn, and every figure is also
given as a ratio to grpclib measured in the same run (the median of the
per-run ratios), because absolute numbers drift between runs on shared
machines while ratios hold.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from benchhello.benchhello_pb2 import HelloReply, HelloRequest  # noqa: E402

PY = sys.executable
GREETER = "/benchhello.Greeter/"
MIB = 1024 * 1024


# --- what is measured ----------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    key: str
    title: str
    unit: str
    higher_is_better: bool
    ceiling: bool = False  # also measured on the bare ceilings


METRICS = [
    Metric("unary_1x1", "unary 1×1", "calls/s", True, ceiling=True),
    Metric("unary_10x10", "unary 10×10", "calls/s", True, ceiling=True),
    Metric("p50_ms", "p50 1×1", "ms", False, ceiling=True),
    Metric("p99_ms", "p99 1×1", "ms", False, ceiling=True),
    Metric("server_stream", "server-streaming", "msg/s", True),
    Metric("client_stream", "client-streaming", "msg/s", True),
    Metric("bidi", "bidi ping-pong ×10", "round trips/s", True),
    Metric("mib_s", "1 MiB messages", "MiB/s", True),
    Metric("rss_idle", "RSS idle", "MiB", False, ceiling=True),
    Metric("rss_100", "RSS 100 conns", "MiB", False, ceiling=True),
    Metric("kib_per_conn", "per connection", "KiB", False, ceiling=True),
]
METRIC = {m.key: m for m in METRICS}


@dataclass
class ServerKind:
    key: str
    title: str
    ceiling: bool = False
    skip_reason: str | None = None
    note: str = ""


@dataclass
class Settings:
    runs: int
    duration: float  # seconds per measurement
    warmup: float
    stream_count: int  # small messages per server-streaming call
    collect_count: int  # messages per client-streaming call
    big_count: int  # 1 MiB messages per call
    hold_conns: int
    pingpong_conns: int
    client_stream_count: int


FULL = Settings(
    runs=3, duration=3.0, warmup=0.5, stream_count=20000, collect_count=1000, big_count=8,
    hold_conns=100, pingpong_conns=10, client_stream_count=10000,
)
SMOKE = Settings(
    runs=1, duration=0.3, warmup=0.1, stream_count=200, collect_count=50, big_count=2,
    hold_conns=5, pingpong_conns=2, client_stream_count=200,
)


# --- environment -----------------------------------------------------------------


def _has_module(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def middleware_names() -> list[str]:
    """Built-in middleware this checkout has (the stack grpcasgi-mw runs)."""
    out = subprocess.run(
        [PY, "-c", "import servers, sys; print(','.join(servers.middleware_stack()[1]))"],
        cwd=HERE, capture_output=True, text=True,
    )
    return [n for n in out.stdout.strip().split(",") if n] if out.returncode == 0 else []


def server_kinds() -> list[ServerKind]:
    kinds = [ServerKind("grpcasgi", "grpcasgi (bundled)")]
    if _has_module("uvloop"):
        kinds.append(ServerKind("grpcasgi-uvloop", "grpcasgi (bundled, uvloop)"))
    else:
        kinds.append(ServerKind("grpcasgi-uvloop", "grpcasgi (bundled, uvloop)", skip_reason="uvloop is not installed"))
    mw = middleware_names()
    kinds.append(
        ServerKind(
            "grpcasgi-mw",
            "grpcasgi (bundled) + middleware",
            skip_reason=None if mw else "grpcasgi/middleware/ has no built-in middleware yet",
            note=("middleware, outermost first: " + ", ".join(mw) + " (OpenTelemetry SDK tracer/meter providers without exporter, access log at INFO into /dev/null, bearer-token auth)") if mw else "",
        )
    )
    if not (ROOT / "grpcasgi" / "asgi.py").exists():
        reason: str | None = "grpcasgi/asgi.py does not exist yet"
    elif not _has_module("hypercorn"):
        reason = "hypercorn is not installed"
    else:
        reason = None
    kinds.append(ServerKind("grpcasgi-hypercorn", "grpcasgi.asgi.App under Hypercorn", skip_reason=reason))
    kinds.append(ServerKind("grpclib", "grpclib", skip_reason=None if _has_module("grpclib") else "grpclib is not installed"))
    grpc_missing = None if _has_module("grpc") else "grpcio is not installed"
    kinds.append(ServerKind("grpcio-aio", "grpcio asyncio server", skip_reason=grpc_missing))
    kinds.append(ServerKind("grpcio-threads", "grpcio thread-pool server (16 threads)", skip_reason=grpc_missing))
    kinds.append(ServerKind("bare-h2", "ceiling: bare asyncio + h2 responder", ceiling=True))
    kinds.append(
        ServerKind(
            "bare-asgi",
            "ceiling: bare ASGI responder under Hypercorn",
            ceiling=True,
            skip_reason=None if _has_module("hypercorn") else "hypercorn is not installed",
        )
    )
    return kinds


def pinning() -> tuple[list[str], list[str], str]:
    """Command prefixes for the server and the load generator, and a description."""
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", "0"], ["taskset", "-c", "1"], "server on CPU 0, load generator on CPU 1 (taskset)"
    return [], [], "not pinned (taskset missing or a single CPU)"


def load_average() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "unknown"


def machine_description() -> list[str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = []
    for dist in ("h2", "hpack", "protobuf", "grpclib", "grpcio", "hypercorn", "uvloop"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions.append(f"{dist} {version(dist)}")
    h2load = "absent"
    if shutil.which("h2load"):
        out = subprocess.run(["h2load", "--version"], capture_output=True, text=True).stdout.strip()
        h2load = out or "present"
    return [
        f"- `nproc`: {os.cpu_count()}",
        f"- CPU: {cpu}",
        f"- Python {platform.python_version()} ({platform.python_implementation()}), {platform.platform()}",
        f"- packages: {', '.join(versions)}",
        f"- load generator: {h2load}",
    ]


# --- processes -----------------------------------------------------------------------


def last_line(text: str) -> str:
    """The last non-empty line of a process's output (a traceback's exception)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    def __init__(self, kind: str, pin: list[str], log_dir: Path) -> None:
        self.kind = kind
        self.port = free_port()
        self.log = log_dir / f"server-{kind}.log"
        self._log_file = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [*pin, PY, str(HERE / "servers.py"), kind, str(self.port)],
            cwd=HERE, stdout=self._log_file, stderr=self._log_file,
        )

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} server exited ({self.proc.returncode}): {last_line(self.log_tail())}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.kind} server did not listen within {timeout}s: {last_line(self.log_tail())}")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-1500:]
        return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()


# --- load generators ---------------------------------------------------------------------


def grpc_body(*messages: HelloRequest) -> bytes:
    out = b""
    for message in messages:
        data = message.SerializeToString()
        out += struct.pack(">?I", False, len(data)) + data
    return out


def framed_size(message: Any) -> int:
    return 5 + message.ByteSize()


@dataclass
class H2loadResult:
    req_per_s: float
    succeeded: int
    elapsed: float  # warm-up included
    data_bytes: int  # DATA payload received, warm-up included
    latencies_us: list[int] = field(default_factory=list)


class Bench:
    def __init__(self, settings: Settings, pin_load: list[str], work: Path) -> None:
        self.s = settings
        self.pin = pin_load
        self.work = work
        self.h2load = shutil.which("h2load")
        s = settings
        self.bodies = {
            "unary": self._body("unary", grpc_body(HelloRequest(name="world"))),
            "server_stream": self._body("ss", grpc_body(HelloRequest(name="world", count=s.stream_count))),
            "client_stream": self._body("cs", grpc_body(*[HelloRequest(name="world")] * s.collect_count)),
            "big": self._body("big", grpc_body(HelloRequest(name="world", count=s.big_count, size=MIB))),
        }
        self.unary_reply = framed_size(HelloReply(message="Hello, world!"))
        self.stream_reply = framed_size(HelloReply(message="Hello, world!"))

    def _body(self, name: str, data: bytes) -> Path:
        path = self.work / f"{name}.bin"
        path.write_bytes(data)
        return path

    def run_h2load(self, port: int, method: str, body: str, conns: int, streams: int, log: bool = False) -> H2loadResult:
        assert self.h2load is not None
        s = self.s
        log_file = self.work / "h2load.log"
        cmd = [
            *self.pin, self.h2load, "-t", "1", "-c", str(conns), "-m", str(streams),
            "-D", f"{int(s.duration * 1000)}ms", "--warm-up-time", f"{int(s.warmup * 1000)}ms",
            "-H", "content-type: application/grpc", "-H", "te: trailers", "-H", "authorization: Bearer bench",
            "-d", str(self.bodies[body]),
        ]
        if log:
            cmd += ["--log-file", str(log_file)]
        cmd.append(f"http://127.0.0.1:{port}{GREETER}{method}")
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=s.duration + s.warmup + 60)
        out = proc.stdout
        if proc.returncode != 0:
            raise RuntimeError(f"h2load failed ({proc.returncode}): {last_line(proc.stderr + proc.stdout)}")
        finished = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out)
        requests = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
        data = re.search(r"\((\d+)\) data", out)
        if not (finished and requests and data):
            raise RuntimeError(f"unexpected h2load output: {last_line(out)}")
        failed = int(requests.group(2)) + int(requests.group(3))
        if failed:
            raise RuntimeError(f"h2load: {failed} requests failed or errored")
        elapsed = float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1)
        result = H2loadResult(float(finished.group(3)), int(requests.group(1)), elapsed, int(data.group(1)))
        if log and log_file.exists():
            rows = [line.split("\t") for line in log_file.read_text().splitlines() if line.strip()]
            if rows:
                first = min(int(r[0]) for r in rows)
                cut = first + int(s.warmup * 1e6)
                result.latencies_us = [int(r[2]) for r in rows if int(r[0]) >= cut] or [int(r[2]) for r in rows]
            log_file.unlink()
        return result

    def _check_data(self, result: H2loadResult, per_call: int, what: str) -> None:
        # A gRPC error is still HTTP 200 to h2load; its response carries no message.
        if result.succeeded and result.data_bytes < 0.9 * result.succeeded * per_call:
            raise RuntimeError(f"{what}: responses carry too little data; the server answered with errors")

    def unary(self, port: int, conns: int, streams: int, log: bool = False) -> H2loadResult:
        result = self.run_h2load(port, "SayHello", "unary", conns, streams, log)
        self._check_data(result, self.unary_reply, "unary")
        return result

    def server_stream(self, port: int) -> float:
        result = self.run_h2load(port, "SayHellos", "server_stream", 1, 1)
        if result.data_bytes < self.stream_reply:
            raise RuntimeError("server-streaming: no messages received")
        return result.data_bytes / self.stream_reply / result.elapsed

    def client_stream(self, port: int) -> float:
        result = self.run_h2load(port, "CollectHellos", "client_stream", 1, 1)
        reply = framed_size(HelloReply(message=f"Hello, {self.s.collect_count} names!", count=self.s.collect_count))
        self._check_data(result, reply, "client-streaming")
        return result.req_per_s * self.s.collect_count

    def big(self, port: int) -> float:
        result = self.run_h2load(port, "SayHellos", "big", 1, 1)
        if result.data_bytes < MIB:
            raise RuntimeError("1 MiB streaming: no message received")
        return result.data_bytes / MIB / result.elapsed

    def pingpong(self, port: int) -> float:
        s = self.s
        cmd = [
            *self.pin, PY, str(HERE / "rawh2.py"), "pingpong", str(port), "--conns", str(s.pingpong_conns),
            "--duration", f"{s.duration:g}", "--warmup", f"{s.warmup:g}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=s.duration + s.warmup + 60)
        if proc.returncode != 0:
            raise RuntimeError(f"rawh2 pingpong failed: {last_line(proc.stderr)}")
        return float(json.loads(proc.stdout)["round_trips_per_s"])

    @contextlib.contextmanager
    def hold(self, port: int, conns: int) -> Iterator[None]:
        cmd = [*self.pin, PY, str(HERE / "rawh2.py"), "hold", str(port), "--conns", str(conns)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if line.strip() != "OPEN":
                raise RuntimeError(f"rawh2 hold failed: {last_line(line + (proc.stderr.read() if proc.stderr else ''))}")
            yield
        finally:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def memory(self, server: ServerProcess) -> dict[str, float]:
        with self.hold(server.port, 1):  # first call: lazy imports and caches are not per connection
            pass
        time.sleep(0.3)
        idle = server.rss_kib()
        n = self.s.hold_conns
        with self.hold(server.port, n):
            time.sleep(0.3)
            loaded = server.rss_kib()
        return {"rss_idle": idle / 1024, "rss_100": loaded / 1024, "kib_per_conn": (loaded - idle) / n}

    def client(self, kind: str, port: int, mode: str) -> dict[str, float]:
        s = self.s
        cmd = [
            *self.pin, PY, str(HERE / "clients.py"), kind, str(port), mode,
            "--duration", f"{s.duration:g}", "--warmup", f"{s.warmup:g}", "--count", str(s.client_stream_count),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=s.duration + s.warmup + 60)
        if proc.returncode != 0:
            raise RuntimeError(f"clients.py {kind} {mode} failed: {last_line(proc.stderr)}")
        return dict(json.loads(proc.stdout))


# --- a run -----------------------------------------------------------------------------


Values = dict[str, dict[str, float | str]]  # server -> metric -> value or error text


def measure_server(bench: Bench, server: ServerProcess, kind: ServerKind, log: Callable[[str], None]) -> dict[str, float | str]:
    values: dict[str, float | str] = {}

    def step(keys: tuple[str, ...], fn: Callable[[], Any]) -> None:
        try:
            got = fn()
        except Exception as exc:  # one failed measurement must not lose the rest
            for key in keys:
                values[key] = f"error: {exc}"
            log(f"    {'/'.join(keys)}: ERROR {exc}")
            return
        if not isinstance(got, dict):
            got = {keys[0]: got}
        values.update(got)
        log("    " + ", ".join(f"{k}={fmt(got[k])}" for k in keys if k in got))

    step(("rss_idle", "rss_100", "kib_per_conn"), lambda: bench.memory(server))
    if bench.h2load:

        def unary_1x1() -> dict[str, float]:
            r = bench.unary(server.port, 1, 1, log=True)
            lat = sorted(r.latencies_us)
            out = {"unary_1x1": r.req_per_s}
            if lat:
                out["p50_ms"] = lat[len(lat) // 2] / 1000
                out["p99_ms"] = lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1000
            return out

        step(("unary_1x1", "p50_ms", "p99_ms"), unary_1x1)
        step(("unary_10x10",), lambda: bench.unary(server.port, 10, 10).req_per_s)
        if not kind.ceiling:
            step(("server_stream",), lambda: bench.server_stream(server.port))
            step(("client_stream",), lambda: bench.client_stream(server.port))
            step(("mib_s",), lambda: bench.big(server.port))
    if not kind.ceiling:
        step(("bidi",), lambda: bench.pingpong(server.port))
    return values


CLIENTS = ["grpcasgi", "grpclib", "grpcio"]
CLIENT_METRICS = [
    ("unary_ops", "unary calls/s (10 concurrent, 1 channel)", True),
    ("unary_cpu", "client CPU µs per unary call", False),
    ("stream_ops", "streamed messages/s (1 call at a time)", True),
    ("stream_cpu", "client CPU µs per streamed message", False),
]
CLIENT_SERVER = "grpcio-aio"


def measure_clients(bench: Bench, pin_server: list[str], work: Path, log: Callable[[str], None]) -> Values:
    out: Values = {}
    if not _has_module("grpc"):
        log("  clients: skipped, grpcio is not installed")
        return out
    server = ServerProcess(CLIENT_SERVER, pin_server, work)
    try:
        server.wait_ready()
        for kind in CLIENTS:
            if kind == "grpclib" and not _has_module("grpclib"):
                continue
            values: dict[str, float | str] = {}
            for mode in ("unary", "stream"):
                try:
                    r = bench.client(kind, server.port, mode)
                    values[f"{mode}_ops"] = r["ops_per_s"]
                    values[f"{mode}_cpu"] = r["cpu_us_per_op"]
                except Exception as exc:
                    values[f"{mode}_ops"] = values[f"{mode}_cpu"] = f"error: {exc}"
            log(f"  client {kind}: " + ", ".join(f"{k}={fmt(v)}" for k, v in values.items()))
            out[kind] = values
    finally:
        server.stop()
    return out


# --- reporting ----------------------------------------------------------------------------


def fmt(value: float | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return "error"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def median_of(runs: list[Values], server: str, key: str) -> float | str | None:
    values = [r[server][key] for r in runs if server in r and key in r[server]]
    numbers = [v for v in values if isinstance(v, (int, float))]
    if numbers:
        return statistics.median(numbers)
    return values[0] if values else None


def ratio_of(runs: list[Values], server: str, key: str, base: str) -> float | None:
    ratios = []
    for r in runs:
        a, b = r.get(server, {}).get(key), r.get(base, {}).get(key)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
            ratios.append(a / b)
    return statistics.median(ratios) if ratios else None


def cell(runs: list[Values], server: str, key: str, base: str) -> str:
    value = median_of(runs, server, key)
    if value is None:
        return "—"
    if isinstance(value, str):
        return "error"
    ratio = ratio_of(runs, server, key, base)
    return f"{fmt(value)} ({ratio:.2f}×)" if ratio is not None and server != base else fmt(value)


def goal_lines(server_runs: list[Values], client_runs: list[Values]) -> list[str]:
    goals = [
        ("bundled server unary 10×10", ratio_of(server_runs, "grpcasgi", "unary_10x10", "grpclib"), 2.0, True),
        ("bundled server server-streaming small messages", ratio_of(server_runs, "grpcasgi", "server_stream", "grpclib"), 3.0, True),
        ("client unary calls/s (grpcasgi Channel vs grpclib Channel)", ratio_of(client_runs, "grpcasgi", "unary_ops", "grpclib"), 1.5, True),
        ("memory per idle connection (grpcasgi vs grpclib)", ratio_of(server_runs, "grpcasgi", "kib_per_conn", "grpclib"), 1.0, False),
    ]
    lines = []
    for title, ratio, target, higher in goals:
        if ratio is None:
            lines.append(f"- {title}: not measured")
            continue
        met = ratio >= target if higher else ratio <= target
        sign = "≥" if higher else "≤"
        lines.append(f"- {title}: **{ratio:.2f}×** (goal {sign} {target:g}×) — {'met' if met else 'MISSED'}")
    return lines


def write_results(
    path: Path, settings: Settings, kinds: list[ServerKind], server_runs: list[Values], client_runs: list[Values],
    command: str, pin_desc: str, elapsed: float, profile: list[str], smoke: bool,
    machine: list[str] | None = None,
) -> None:
    base = "grpclib"
    lines = [
        "# Benchmark results" + (" (smoke run: tiny counts, not meaningful)" if smoke else ""),
        "",
        f"Generated by `{command}` in {elapsed / 60:.1f} min. Do not edit by hand: rerun the command "
        "(`benchmarks/NOTES.md` is included at the end).",
        "",
        "## Machine",
        "",
        *(machine if machine is not None else machine_description()),
        f"- pinning: {pin_desc}",
        f"- {settings.runs} runs, {settings.duration:g} s per measurement after a {settings.warmup:g} s warm-up; "
        "medians reported; ratio in parentheses = median over runs of (this server / grpclib in the same run)",
        "",
        "## Servers",
        "",
        "Load from h2load (unary: 1 connection × 1 stream and 10 × 10; server-streaming: one call at a time "
        f"receiving {settings.stream_count:,} small replies; client-streaming: one call at a time sending "
        f"{settings.collect_count:,} small messages; 1 MiB: one call at a time receiving {settings.big_count} "
        f"messages of 1 MiB), `rawh2.py` (bidi ping-pong on {settings.pingpong_conns} connections, one message in "
        f"flight each; {settings.hold_conns} idle connections for memory). Higher is better for rates, lower for "
        "latency and memory.",
        "",
    ]
    header = ["server"] + [f"{m.title} ({m.unit})" for m in METRICS]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    skipped = []
    notes = []
    for kind in kinds:
        if kind.skip_reason:
            skipped.append(f"- {kind.title} (`{kind.key}`): skipped — {kind.skip_reason}")
            continue
        row = [f"{kind.title}"]
        for m in METRICS:
            row.append(cell(server_runs, kind.key, m.key, base) if (m.ceiling or not kind.ceiling) else "n/a")
        lines.append("| " + " | ".join(row) + " |")
        if kind.note:
            notes.append(f"- {kind.title}: {kind.note}")
    lines.append("")
    if skipped:
        lines += ["Skipped:", "", *skipped, ""]
    if notes:
        lines += [*notes, ""]
    errors = [
        f"- {server} {key}: {value}"
        for run in server_runs + client_runs
        for server, values in run.items()
        for key, value in values.items()
        if isinstance(value, str)
    ]
    lines += [
        "## Clients",
        "",
        f"Each client library calls the same {CLIENT_SERVER} server (pinned to CPU 0) from one process on CPU 1. "
        "Client CPU per operation counts all the client's threads (grpcio's C core has its own).",
        "",
    ]
    header = ["client"] + [t for _, t, _ in CLIENT_METRICS]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for kind in CLIENTS:
        if not any(kind in r for r in client_runs):
            continue
        lines.append("| " + " | ".join([kind] + [cell(client_runs, kind, key, base) for key, _, _ in CLIENT_METRICS]) + " |")
    lines += ["", "## Goals (ratios measured in this run)", "", *goal_lines(server_runs, client_runs), ""]
    if profile:
        lines += ["## Profile of the bundled server (unary 10×10, py-spy, pinned)", "", *profile, ""]
    if errors:
        lines += ["## Errors", "", *errors, ""]
    notes_file = HERE / "NOTES.md"
    if notes_file.exists() and not smoke:
        lines += [notes_file.read_text().rstrip(), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


# --- profile -------------------------------------------------------------------------------


def profile_bundled(bench: Bench, pin_server: list[str], work: Path, log: Callable[[str], None]) -> list[str]:
    """py-spy samples of the bundled server under unary 10×10 load: top functions by own time."""
    py_spy = shutil.which("py-spy") or str(Path(PY).parent / "py-spy")
    if not Path(py_spy).exists() or not bench.h2load:
        return []
    server = ServerProcess("grpcasgi", pin_server, work)
    raw = work / "profile.txt"
    try:
        server.wait_ready()
        bench.unary(server.port, 10, 10)  # warm
        spy = subprocess.Popen(
            [py_spy, "record", "--pid", str(server.proc.pid), "--format", "raw", "--rate", "500",
             "--output", str(raw), "--nonblocking", "--duration", f"{int(bench.s.duration) + 1}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        time.sleep(0.3)
        bench.unary(server.port, 10, 10)
        spy.wait(60)
    except Exception as exc:
        log(f"  profile failed: {exc}")
        return []
    finally:
        server.stop()
    if not raw.exists():
        return []
    own: dict[str, int] = {}
    by_module: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        leaf = stack.split(";")[-1]
        own[leaf] = own.get(leaf, 0) + count
        module = _module_of(leaf)
        by_module[module] = by_module.get(module, 0) + count
    if not total:
        return []
    out = ["Own time by package:", ""]
    out += [f"- {mod}: {n * 100 / total:.0f} %" for mod, n in sorted(by_module.items(), key=lambda kv: -kv[1])[:8]]
    out += ["", "Top functions by own time:", "", "| own % | function |", "|---|---|"]
    for leaf, n in sorted(own.items(), key=lambda kv: -kv[1])[:15]:
        out.append(f"| {n * 100 / total:.1f} | `{leaf}` |")
    return out


def _module_of(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)".
    match = re.search(r"\(([^():]+)(?::\d+)?\)$", frame)
    path = match.group(1) if match else frame
    for name in ("grpcasgi", "h2", "hpack", "hyperframe", "asyncio", "google", "multidict", "benchmarks"):
        if f"/{name}/" in path or path.startswith(f"{name}/"):
            return name
    if "site-packages" in path:
        return path.split("site-packages/")[1].split("/")[0]
    return "other (interpreter, stdlib)"


# --- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="seconds: tiny counts, one run, skips h2load if absent")
    parser.add_argument("--runs", type=int, help="runs (medians over them)")
    parser.add_argument("--duration", type=float, help="seconds per measurement")
    parser.add_argument("--only", help="comma-separated server keys (grpclib is always included)")
    parser.add_argument("--no-clients", action="store_true", help="skip the client benchmark")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profile")
    parser.add_argument("--output", type=Path, help="results file (default benchmarks/RESULTS.md; smoke: a temp file)")
    parser.add_argument(
        "--render", type=Path, metavar="RESULTS_JSON",
        help="only rewrite the results file from a results.json of an earlier run (e.g. after editing NOTES.md)",
    )
    args = parser.parse_args(argv)
    if args.render:
        saved = json.loads(args.render.read_text())
        write_results(
            args.output or HERE / "RESULTS.md", Settings(**saved["settings"]), [ServerKind(**k) for k in saved["kinds"]],
            saved["servers"], saved["clients"], saved["command"], saved["pinning"], saved["elapsed"], saved["profile"],
            saved["smoke"], machine=saved["machine"],
        )
        return 0
    started = time.monotonic()
    load_before = load_average()
    settings = SMOKE if args.smoke else FULL
    if args.runs or args.duration:
        settings = Settings(**{**settings.__dict__, **({"runs": args.runs} if args.runs else {}),
                               **({"duration": args.duration} if args.duration else {})})
    command = "python benchmarks/run.py" + "".join(f" {shlex.quote(a)}" for a in (argv if argv is not None else sys.argv[1:]))
    output = args.output or (Path(tempfile.mkdtemp(prefix="grpcasgi-bench-")) / "RESULTS.md" if args.smoke else HERE / "RESULTS.md")

    def log(message: str) -> None:
        print(message, flush=True)

    pin_server, pin_load, pin_desc = pinning()
    kinds = server_kinds()
    if args.only:
        wanted = set(args.only.split(",")) | {"grpclib"}
        kinds = [k for k in kinds if k.key in wanted]
    for kind in kinds:
        if kind.skip_reason:
            log(f"skipping {kind.key}: {kind.skip_reason}")
    work = Path(tempfile.mkdtemp(prefix="grpcasgi-bench-work-"))
    bench = Bench(settings, pin_load, work)
    if not bench.h2load:
        if not args.smoke:
            log("h2load not found: install nghttp2-client (bash benchmarks/run.sh does) or use --smoke")
            return 2
        log("h2load not found: skipping the h2load measurements (unary, latency, server/client streaming, 1 MiB)")
    log(f"{pin_desc}; {settings.runs} run(s) of {settings.duration:g} s measurements; work dir {work}")

    server_runs: list[Values] = []
    client_runs: list[Values] = []
    for run in range(settings.runs):
        log(f"run {run + 1}/{settings.runs}")
        values: Values = {}
        for kind in kinds:
            if kind.skip_reason:
                continue
            log(f"  {kind.key}")
            server = ServerProcess(kind.key, pin_server, work)
            try:
                server.wait_ready()
                values[kind.key] = measure_server(bench, server, kind, log)
            except Exception as exc:
                values[kind.key] = {"unary_10x10": f"error: {exc}"}
                log(f"    ERROR {exc}")
            finally:
                server.stop()
        server_runs.append(values)
        if not args.no_clients:
            client_runs.append(measure_clients(bench, pin_server, work, log))
    profile = [] if (args.smoke or args.no_profile) else profile_bundled(bench, pin_server, work, log)
    elapsed = time.monotonic() - started
    machine = machine_description() + [
        f"- load average (1, 5, 15 min) at the start: {load_before}; at the end: {load_average()} "
        "(other work on the machine shares both CPUs; compare ratios, not absolute numbers)"
    ]
    write_results(
        output, settings, kinds, server_runs, client_runs, command, pin_desc, elapsed, profile, args.smoke, machine=machine
    )
    (output.parent / "results.json").write_text(
        json.dumps(
            {
                "servers": server_runs,
                "clients": client_runs,
                "settings": settings.__dict__,
                "kinds": [k.__dict__ for k in kinds],
                "command": command,
                "pinning": pin_desc,
                "elapsed": elapsed,
                "profile": profile,
                "smoke": args.smoke,
                "machine": machine,
            },
            indent=1,
        )
    )
    failed = any(isinstance(v, str) for run in server_runs + client_runs for vals in run.values() for v in vals.values())
    if failed:
        log(f"some measurements failed: see the Errors section and the server logs in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    log(f"wrote {output} in {elapsed:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
