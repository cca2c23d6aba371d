"""The helloworld Greeter server.

    cd examples/helloworld && python server.py --port 50051
"""

import argparse
import asyncio

from grpcasgi.server import Server, Stream
from grpcasgi.utils import graceful_exit

from helloworld.helloworld_grpc import GreeterBase
from helloworld.helloworld_pb2 import HelloReply, HelloRequest


class Greeter(GreeterBase):
    async def SayHello(self, stream: Stream[HelloRequest, HelloReply]) -> None:
        request = await stream.recv_message()
        assert request is not None
        await stream.send_message(HelloReply(message=f"Hello, {request.name}!"))

    async def SayHellos(self, stream: Stream[HelloRequest, HelloReply]) -> None:
        request = await stream.recv_message()
        assert request is not None
        for greeting in ("Hello", "Bonjour", "Hola"):
            await stream.send_message(HelloReply(message=f"{greeting}, {request.name}!"))


async def main(*, host: str = "127.0.0.1", port: int = 50051) -> None:
    server = Server([Greeter()])
    with graceful_exit([server]):
        await server.start(host, port)
        print(f"Serving on {host}:{port}", flush=True)
        await server.wait_closed()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=50051)
    args = parser.parse_args()
    asyncio.run(main(host=args.host, port=args.port))
