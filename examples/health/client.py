"""Ask the health example server how it is: one Check, then Watch until it is serving.

    python examples/health/client.py --port 50051 [--service helloworld.Greeter]

Prints ``check <service>: <STATUS>`` then one ``watch <service>: <STATUS>``
line per status the server streams, and exits after the first SERVING (or
when the server ends the stream, e.g. shutting down).
"""

from __future__ import annotations

import argparse
import asyncio

from grpcasgi.client import Channel
from grpcasgi.contrib.protos.grpc.health.v1.health_grpc import HealthStub
from grpcasgi.contrib.protos.grpc.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from grpcasgi.exceptions import GRPCError


def name(status: int) -> str:
    return HealthCheckResponse.ServingStatus.Name(status)  # type: ignore[arg-type]


async def main(*, host: str, port: int, service: str) -> None:
    async with Channel(host, port) as channel:
        health = HealthStub(channel)
        try:
            reply = await health.Check(HealthCheckRequest(service=service), timeout=5)
            print(f"check {service or '<server>'}: {name(reply.status)}", flush=True)
        except GRPCError as exc:
            print(f"check {service or '<server>'}: {exc.status.name}", flush=True)

        async with health.Watch.open(timeout=60) as stream:
            await stream.send_message(HealthCheckRequest(service=service), end=True)
            async for reply in stream:
                print(f"watch {service or '<server>'}: {name(reply.status)}", flush=True)
                if reply.status == HealthCheckResponse.SERVING:
                    await stream.cancel()
                    break


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=50051)
    parser.add_argument("--service", default="helloworld.Greeter", help='"" for the whole server')
    args = parser.parse_args()
    asyncio.run(main(host=args.host, port=args.port, service=args.service))
