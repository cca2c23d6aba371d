"""Soak test: mixed load with cancellations and deadlines against one server,
for a given time, then a check that nothing was left behind.

    python scripts/soak.py --duration 600            # locally, ten minutes
    python scripts/soak.py --duration 4 --json       # what tests/hostile/test_soak.py runs

Client and server run in this process (one event loop, real loopback TCP),
so tasks and connections can be counted exactly. Every call is one of:
unary, server streaming, client streaming, bidi, a call cancelled by the
client mid-stream, a call that runs past its deadline. Expected outcomes
are OK, CANCELLED (the cancelled ones) and DEADLINE_EXCEEDED (the slow
ones); anything else counts as an error.

Reported: calls and outcomes by status, errors, RSS at start and end (after
a warm-up of the first ``--warmup`` seconds, so imports and first-use
allocations are not counted as growth), asyncio tasks and server
connections before and after. Exit status 1 when an error occurred, tasks
or connections were left behind, or RSS grew more than ``--max-rss-growth-mb``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from google.protobuf.wrappers_pb2 import StringValue  # noqa: E402

from grpcasgi.client import Channel  # noqa: E402
from grpcasgi.config import Configuration  # noqa: E402
from grpcasgi.const import Cardinality, Handler  # noqa: E402
from grpcasgi.exceptions import GRPCError  # noqa: E402
from grpcasgi.server import Server  # noqa: E402

SV = StringValue


def rss_bytes() -> int:
    try:
        with open(f"/proc/{os.getpid()}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


class Soak:
    """The service under load."""

    async def unary(self, stream: Any) -> None:
        req = await stream.recv_message()
        await stream.send_message(SV(value=req.value))

    async def server_stream(self, stream: Any) -> None:
        req = await stream.recv_message()
        for i in range(int(req.value)):
            await stream.send_message(SV(value=str(i) * 64))

    async def client_stream(self, stream: Any) -> None:
        total = 0
        async for msg in stream:
            total += len(msg.value)
        await stream.send_message(SV(value=str(total)))

    async def bidi(self, stream: Any) -> None:
        async for msg in stream:
            await stream.send_message(SV(value=msg.value.upper()))

    async def slow(self, stream: Any) -> None:
        await stream.recv_message()
        await asyncio.sleep(3600)  # only the deadline ends it

    def __mapping__(self) -> dict[str, Handler]:
        return {
            "/soak.S/Unary": Handler(self.unary, Cardinality.UNARY_UNARY, SV, SV),
            "/soak.S/ServerStream": Handler(self.server_stream, Cardinality.UNARY_STREAM, SV, SV),
            "/soak.S/ClientStream": Handler(self.client_stream, Cardinality.STREAM_UNARY, SV, SV),
            "/soak.S/Bidi": Handler(self.bidi, Cardinality.STREAM_STREAM, SV, SV),
            "/soak.S/Slow": Handler(self.slow, Cardinality.UNARY_UNARY, SV, SV),
        }


async def one_call(channel: Channel, rng: random.Random) -> str:
    """One call of a random kind; returns the outcome's status name."""
    r = rng.random()
    try:
        if r < 0.45:
            async with channel.request("/soak.S/Unary", Cardinality.UNARY_UNARY, SV, SV, timeout=10) as s:
                await s.send_message(SV(value="x" * rng.randint(0, 2000)), end=True)
                await s.recv_message()
        elif r < 0.60:
            n = rng.randint(1, 50)
            async with channel.request("/soak.S/ServerStream", Cardinality.UNARY_STREAM, SV, SV, timeout=10) as s:
                await s.send_message(SV(value=str(n)), end=True)
                got = [m async for m in s]
                assert len(got) == n
        elif r < 0.72:
            async with channel.request("/soak.S/ClientStream", Cardinality.STREAM_UNARY, SV, SV, timeout=10) as s:
                for _ in range(rng.randint(0, 30)):
                    await s.send_message(SV(value="y" * 100))
                await s.end()
                await s.recv_message()
        elif r < 0.84:
            async with channel.request("/soak.S/Bidi", Cardinality.STREAM_STREAM, SV, SV, timeout=10) as s:
                for i in range(rng.randint(1, 20)):
                    await s.send_message(SV(value=f"m{i}"))
                    await s.recv_message()
                await s.end()
                assert await s.recv_message() is None
        elif r < 0.92:
            # Cancelled by the client in the middle of a stream.
            async with channel.request("/soak.S/Bidi", Cardinality.STREAM_STREAM, SV, SV, timeout=10) as s:
                for i in range(rng.randint(1, 5)):
                    await s.send_message(SV(value=f"c{i}"))
                    await s.recv_message()
                await s.cancel()
            return "CANCELLED"
        else:
            # Runs past its deadline.
            async with channel.request("/soak.S/Slow", Cardinality.UNARY_UNARY, SV, SV, timeout=rng.uniform(0.01, 0.2)) as s:
                await s.send_message(SV(value="slow"), end=True)
                await s.recv_message()
    except GRPCError as exc:
        return exc.status.name
    return "OK"


EXPECTED = {"OK", "CANCELLED", "DEADLINE_EXCEEDED"}


async def soak(duration: float, concurrency: int, channels: int, warmup: float, seed: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    gc.collect()
    tasks_before = len(asyncio.all_tasks())
    server = Server([Soak()], config=Configuration(shutdown_grace=5))
    await server.start("127.0.0.1", 0)
    chans = [Channel("127.0.0.1", server.port) for _ in range(channels)]
    outcomes: Counter[str] = Counter()
    errors: list[str] = []
    rng = random.Random(seed)
    start = loop.time()
    stop_at = start + duration
    rss_start = rss_bytes()
    rss_measured = False

    async def worker(w: int) -> None:
        nonlocal rss_start, rss_measured
        wrng = random.Random(rng.random())
        while loop.time() < stop_at:
            outcome = await one_call(chans[w % len(chans)], wrng)
            outcomes[outcome] += 1
            if outcome not in EXPECTED and len(errors) < 20:
                errors.append(outcome)
            if not rss_measured and loop.time() - start >= warmup:
                rss_measured = True
                gc.collect()
                rss_start = rss_bytes()

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    elapsed = loop.time() - start
    for ch in chans:
        await ch.__aexit__(None, None, None)
    server.close()
    await server.wait_closed()
    assert server._state is not None
    connections_after = len(server._state.connections)
    for _ in range(50):  # let finished tasks be reaped
        await asyncio.sleep(0)
    gc.collect()
    tasks_after = len(asyncio.all_tasks())
    rss_end = rss_bytes()
    calls = sum(outcomes.values())
    return {
        "duration_s": round(elapsed, 2),
        "calls": calls,
        "calls_per_s": round(calls / elapsed, 1) if elapsed else 0,
        "outcomes": dict(outcomes),
        "errors": errors,
        "rss_start_mb": round(rss_start / 2**20, 1),
        "rss_end_mb": round(rss_end / 2**20, 1),
        "rss_growth_mb": round((rss_end - rss_start) / 2**20, 1),
        "tasks_before": tasks_before,
        "tasks_after": tasks_after,
        "connections_after": connections_after,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent callers (default 64)")
    parser.add_argument("--channels", type=int, default=4, help="client connections (default 4)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before the start RSS is taken")
    parser.add_argument("--max-rss-growth-mb", type=float, default=64.0, help="fail above this RSS growth")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    report = asyncio.run(soak(args.duration, args.concurrency, args.channels, args.warmup, args.seed))
    problems = []
    if report["errors"]:
        problems.append(f"unexpected outcomes: {report['errors']}")
    if report["tasks_after"] > report["tasks_before"]:
        problems.append(f"tasks left: {report['tasks_after']} after vs {report['tasks_before']} before")
    if report["connections_after"]:
        problems.append(f"server connections left: {report['connections_after']}")
    if report["rss_growth_mb"] > args.max_rss_growth_mb:
        problems.append(f"RSS grew {report['rss_growth_mb']} MiB (max {args.max_rss_growth_mb})")
    report["problems"] = problems
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:>18}: {value}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
