"""The helloworld Greeter client.

    cd examples/helloworld && python client.py --port 50051
"""

import argparse
import asyncio

from grpcasgi.client import Channel

from helloworld.helloworld_grpc import GreeterStub
from helloworld.helloworld_pb2 import HelloRequest


async def main(*, host: str = "127.0.0.1", port: int = 50051, name: str = "World") -> None:
    async with Channel(host, port) as channel:
        stub = GreeterStub(channel)

        # Unary: one request, one reply.
        reply = await stub.SayHello(HelloRequest(name=name))
        print(reply.message)

        # Server streaming: one request, a stream of replies.
        async with stub.SayHellos.open() as stream:
            await stream.send_message(HelloRequest(name=name), end=True)
            async for reply in stream:
                print(reply.message)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=50051)
    parser.add_argument("--name", default="World")
    args = parser.parse_args()
    asyncio.run(main(host=args.host, port=args.port, name=args.name))
