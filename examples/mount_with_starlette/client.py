"""Call both sides of the port: the gRPC Greeter, then the Starlette routes.

    cd examples/mount_with_starlette && python client.py --port 8000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.request
from pathlib import Path

from grpcasgi.client import Channel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "helloworld"))
from helloworld.helloworld_grpc import GreeterStub  # noqa: E402
from helloworld.helloworld_pb2 import HelloRequest  # noqa: E402


async def call_grpc(host: str, port: int) -> None:
    async with Channel(host, port) as channel:
        stub = GreeterStub(channel)
        reply = await stub.SayHello(HelloRequest(name="gRPC"))
        print(reply.message)
        async with stub.SayHellos.open() as stream:
            await stream.send_message(HelloRequest(name="stream"), end=True)
            async for reply in stream:
                print(reply.message)


def call_web(host: str, port: int) -> None:
    with urllib.request.urlopen(f"http://{host}:{port}/") as response:  # HTTP/1.1
        print(response.read().decode().strip())
    with urllib.request.urlopen(f"http://{host}:{port}/stats") as response:
        print("stats:", json.dumps(json.loads(response.read()), sort_keys=True))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    asyncio.run(call_grpc(args.host, args.port))
    call_web(args.host, args.port)
