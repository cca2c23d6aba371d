"""Server reflection: the helloworld Greeter (plus health) that tools can explore.

    python examples/reflection/server.py --port 50051

Then, with grpcurl (https://github.com/fullstorydev/grpcurl):

    grpcurl -plaintext localhost:50051 list
    grpcurl -plaintext localhost:50051 describe helloworld.Greeter
    grpcurl -plaintext localhost:50051 describe helloworld.HelloRequest
    grpcurl -plaintext -d '{"name": "you"}' localhost:50051 helloworld.Greeter/SayHello

or without installing anything, ``python examples/reflection/client.py --port 50051``.

``ServerReflection.extend(services)`` adds ``grpc.reflection.v1`` and
``grpc.reflection.v1alpha`` (grpcurl and grpc-go use v1, grpcio's client
v1alpha), listing the services found in the ``__mapping__`` paths and
describing them from protobuf's default descriptor pool (pass ``pool=`` for
another one).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from grpcasgi.contrib.health import Health
from grpcasgi.contrib.reflection import ServerReflection
from grpcasgi.server import Server, Stream
from grpcasgi.utils import graceful_exit

# The Greeter's generated code lives in the helloworld example.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "helloworld"))
from helloworld.helloworld_grpc import GreeterBase  # noqa: E402
from helloworld.helloworld_pb2 import HelloReply, HelloRequest  # noqa: E402


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


async def main(*, host: str, port: int) -> None:
    services = ServerReflection.extend([Greeter(), Health()])
    server = Server(services)
    with graceful_exit([server]):
        await server.start(host, port)
        print(f"Serving on {host}:{server.port}", flush=True)
        await server.wait_closed()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=50051, help="0 picks a free port (printed)")
    args = parser.parse_args()
    asyncio.run(main(host=args.host, port=args.port))
