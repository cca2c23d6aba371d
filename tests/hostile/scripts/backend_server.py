"""A backend behind nginx for test_nginx.py: the four cardinalities, a slow
method for deadlines, and its name in every reply. SIGTERM closes it
gracefully (two-step GOAWAY, shutdown_grace for calls in flight).

Usage: backend_server.py NAME [PORT]; prints ``port <n>`` once listening.
"""

import asyncio
import sys

from google.protobuf.wrappers_pb2 import StringValue

from grpcasgi.config import Configuration
from grpcasgi.const import Cardinality, Handler
from grpcasgi.server import Server
from grpcasgi.utils import graceful_exit

NAME = sys.argv[1]
SV = StringValue


async def unary(stream) -> None:
    req = await stream.recv_message()
    await asyncio.sleep(0.002)  # a little work, so restarts catch calls in flight
    await stream.send_message(SV(value=f"{NAME}:{req.value}"))


async def server_stream(stream) -> None:
    req = await stream.recv_message()
    for i in range(int(req.value)):
        await stream.send_message(SV(value=f"{NAME}:{i}"))


async def client_stream(stream) -> None:
    values = [m.value async for m in stream]
    await stream.send_message(SV(value=f"{NAME}:{','.join(values)}"))


async def bidi(stream) -> None:
    async for m in stream:
        await stream.send_message(SV(value=f"{NAME}:{m.value.upper()}"))


async def slow(stream) -> None:
    await stream.recv_message()
    await asyncio.sleep(3600)


class Backend:
    def __mapping__(self) -> dict:
        return {
            "/b.B/Unary": Handler(unary, Cardinality.UNARY_UNARY, SV, SV),
            "/b.B/ServerStream": Handler(server_stream, Cardinality.UNARY_STREAM, SV, SV),
            "/b.B/ClientStream": Handler(client_stream, Cardinality.STREAM_UNARY, SV, SV),
            "/b.B/Bidi": Handler(bidi, Cardinality.STREAM_STREAM, SV, SV),
            "/b.B/Slow": Handler(slow, Cardinality.UNARY_UNARY, SV, SV),
        }


async def main() -> None:
    server = Server([Backend()], config=Configuration(shutdown_grace=5))
    with graceful_exit([server]):
        await server.start("127.0.0.1", int(sys.argv[2]) if len(sys.argv) > 2 else 0)
        print(f"port {server.port}", flush=True)
        await server.wait_closed()


if __name__ == "__main__":
    asyncio.run(main())
