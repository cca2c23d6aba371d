"""Health checking: the helloworld Greeter with a database check and a cache status.

    python examples/health/server.py --port 50051
    python examples/health/client.py --port 50051        # Check, then Watch
    grpc_health_probe -addr=localhost:50051 -service=helloworld.Greeter   # if installed

Two kinds of checks feed ``grpc.health.v1.Health``:

* ``ServiceCheck(db_ping, ...)`` probes a dependency: once per ``check_ttl``
  seconds while someone watches, on demand (cached for the TTL) for Check
  calls, never when nobody asks. A probe that raises or takes longer than
  ``check_timeout`` counts as unhealthy.
* ``ServiceStatus()`` is set by the application when it learns something;
  here the "cache" becomes available ``--warmup`` seconds after start.

The server's overall status (service ``""``) combines both. On SIGINT or
SIGTERM, ``Server.close()`` first makes every service NOT_SERVING (watchers
are told, then their streams end), then stops.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from grpcasgi.contrib.health import Health, ServiceCheck, ServiceStatus
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
        await stream.send_message(HelloReply(message=f"Hello, {request.name}!"))


async def db_ping() -> bool:
    """Stands in for ``await db.execute("SELECT 1")``; raising means unhealthy."""
    await asyncio.sleep(0.01)
    return True


async def main(*, host: str, port: int, warmup: float) -> None:
    greeter = Greeter()
    cache = ServiceStatus(False)  # not connected yet
    db = ServiceCheck(db_ping, check_ttl=5, check_timeout=1)
    health = Health({greeter: [db, cache]})
    server = Server([greeter, health])

    async def connect_cache() -> None:
        await asyncio.sleep(warmup)
        cache.set(True)
        logging.info("cache connected")

    with graceful_exit([server]):
        await server.start(host, port)
        print(f"Serving on {host}:{server.port}", flush=True)
        warming = asyncio.ensure_future(connect_cache())
        try:
            await server.wait_closed()
        finally:
            warming.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=50051, help="0 picks a free port (printed)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds until the cache is up")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(main(host=args.host, port=args.port, warmup=args.warmup))
