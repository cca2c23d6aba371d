"""Client-side benchmark: one client library calling a server, as JSON.

    python clients.py KIND PORT MODE --duration 3

KIND is ``grpcasgi`` (``grpcasgi.client.Channel``), ``grpclib`` or ``grpcio``
(``grpc.aio`` channel). MODE ``unary``: ``--concurrency`` tasks loop on
SayHello over one channel; ``stream``: one task loops on SayHellos calls of
``--count`` small messages. Reports operations per second and the client
process's CPU time per operation (user + system, all threads), which stays
meaningful when the server, not the client, is the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any, Awaitable, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from benchhello.benchhello_pb2 import HelloReply, HelloRequest  # noqa: E402

PATH = "/benchhello.Greeter/"

Call = Callable[[], Awaitable[int]]

#: Messages received by streaming calls so far (counted as they arrive, so a
#: measurement window need not hold whole calls).
received = [0]


def make_calls(kind: str, port: int, count: int) -> tuple[Call, Call, Callable[[], Awaitable[None]]]:
    """(unary call returning 1, streaming call counting into ``received``, close)."""
    unary_request = HelloRequest(name="world")
    stream_request = HelloRequest(name="world", count=count)
    if kind == "grpcasgi":
        from benchhello.benchhello_grpc import GreeterStub
        from grpcasgi.client import Channel

        channel = Channel("127.0.0.1", port)
        stub = GreeterStub(channel)

        async def unary() -> int:
            await stub.SayHello(unary_request)
            return 1

        async def stream() -> int:
            async with stub.SayHellos.open() as call:
                await call.send_message(stream_request, end=True)
                async for _ in call:
                    received[0] += 1
            return 0

        async def close() -> None:
            channel.close()

        return unary, stream, close
    if kind == "grpclib":
        from grpclib.client import Channel as GrpclibChannel
        from grpclib.client import UnaryStreamMethod, UnaryUnaryMethod

        gchannel = GrpclibChannel("127.0.0.1", port)
        say_hello = UnaryUnaryMethod(gchannel, PATH + "SayHello", HelloRequest, HelloReply)
        say_hellos = UnaryStreamMethod(gchannel, PATH + "SayHellos", HelloRequest, HelloReply)

        async def unary() -> int:
            await say_hello(unary_request)
            return 1

        async def stream() -> int:
            async with say_hellos.open() as call:
                await call.send_message(stream_request, end=True)
                while await call.recv_message() is not None:
                    received[0] += 1
            return 0

        async def close() -> None:
            gchannel.close()

        return unary, stream, close
    if kind == "grpcio":
        import grpc

        achannel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        ser, de = HelloRequest.SerializeToString, HelloReply.FromString
        say_hello_io = achannel.unary_unary(PATH + "SayHello", request_serializer=ser, response_deserializer=de)
        say_hellos_io = achannel.unary_stream(PATH + "SayHellos", request_serializer=ser, response_deserializer=de)

        async def unary() -> int:
            await say_hello_io(unary_request)
            return 1

        async def stream() -> int:
            async for _ in say_hellos_io(stream_request):
                received[0] += 1
            return 0

        async def close() -> None:
            await achannel.close()

        return unary, stream, close
    raise SystemExit(f"unknown client {kind!r}")


async def measure(kind: str, port: int, mode: str, duration: float, warmup: float, concurrency: int, count: int) -> dict[str, Any]:
    unary, stream, close = make_calls(kind, port, count)
    call = unary if mode == "unary" else stream
    workers = concurrency if mode == "unary" else 1
    counting = False
    stop = False
    done = 0

    async def worker() -> None:
        nonlocal done
        while not stop:
            n = await call()
            if counting:
                done += n

    await call()  # connect before anything is timed
    tasks = [asyncio.ensure_future(worker()) for _ in range(workers)]
    await asyncio.sleep(warmup)
    counting = True
    received0, cpu0, t0 = received[0], os.times(), time.perf_counter()
    await asyncio.sleep(duration)
    counting = False
    received1, cpu1, elapsed = received[0], os.times(), time.perf_counter() - t0
    done += received1 - received0
    stop = True
    await asyncio.gather(*tasks)
    await close()
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return {
        "ops": done,
        "seconds": elapsed,
        "ops_per_s": done / elapsed,
        "cpu_us_per_op": cpu * 1e6 / done if done else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=("grpcasgi", "grpclib", "grpcio"))
    parser.add_argument("port", type=int)
    parser.add_argument("mode", choices=("unary", "stream"))
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--count", type=int, default=10000)
    args = parser.parse_args()
    result = asyncio.run(
        measure(args.kind, args.port, args.mode, args.duration, args.warmup, args.concurrency, args.count)
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
