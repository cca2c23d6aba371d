"""A server under ``graceful_exit``, run as a subprocess by test_graceful_exit.py.

Prints ``port <n>`` once listening, ``started`` when the blocking handler runs,
``closing`` when the server is asked to close, ``cleanup`` when the handler
is cancelled, and ``exited`` after wait_closed() returned.
Usage: graceful_server.py [grace_seconds]
"""

import asyncio
import sys

from google.protobuf.wrappers_pb2 import StringValue

from grpcasgi.config import Configuration
from grpcasgi.const import Cardinality, Handler
from grpcasgi.server import Server
from grpcasgi.utils import graceful_exit


def say(text: str) -> None:
    print(text, flush=True)


class Blocking:
    async def block(self, stream: object) -> None:
        say("started")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            say("cleanup")
            raise

    def __mapping__(self) -> dict:
        return {"/core.Block/M": Handler(self.block, Cardinality.UNARY_UNARY, StringValue, StringValue)}

    def __on_close__(self) -> None:
        say("closing")


async def main() -> None:
    grace = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
    server = Server([Blocking()], config=Configuration(shutdown_grace=grace))
    with graceful_exit([server]):
        await server.start("127.0.0.1", 0)
        say(f"port {server.port}")
        await server.wait_closed()
    say("exited")


if __name__ == "__main__":
    asyncio.run(main())
