"""A server run as a subprocess and killed with SIGKILL by test_client_resilience.py.

Prints ``port <n>`` once listening and ``entered <method> <tag>`` when a
handler reaches the phase it then stays in forever:

* ``Silent``      reads the request, sends nothing (before response headers)
* ``Headers``     reads the request, sends response headers only
* ``Some``        reads the request, sends three messages, then stays (mid-stream)
* ``NoRead``      never reads the request (the client runs out of flow-control window)

and ``/v.V/Echo``, a unary echo.

Each exists in the four cardinalities (``/v.V/<Method><UU|US|SU|SS>``). Small
flow-control windows make the client block quickly when nothing is read.
"""

import asyncio
import sys

from google.protobuf.wrappers_pb2 import BytesValue

from grpcasgi.config import Configuration
from grpcasgi.const import Cardinality, Handler
from grpcasgi.server import Server

CARDINALITIES = {
    "UU": Cardinality.UNARY_UNARY,
    "US": Cardinality.UNARY_STREAM,
    "SU": Cardinality.STREAM_UNARY,
    "SS": Cardinality.STREAM_STREAM,
}


def say(text: str) -> None:
    print(text, flush=True)


def behaviour(kind: str, name: str):
    async def handler(stream) -> None:
        tag = ""
        if kind != "NoRead":
            req = await stream.recv_message()
            tag = req.value.decode() if req is not None else ""
        if kind == "Headers":
            await stream.send_initial_metadata()
        elif kind == "Some":
            for _ in range(3):
                await stream.send_message(BytesValue(value=b"m"))
        say(f"entered {name} {tag}")
        await asyncio.Event().wait()

    return handler


async def echo(stream) -> None:
    req = await stream.recv_message()
    await stream.send_message(req)


class Victim:
    def __mapping__(self) -> dict:
        out = {"/v.V/Echo": Handler(echo, Cardinality.UNARY_UNARY, BytesValue, BytesValue)}
        for kind in ("Silent", "Headers", "Some", "NoRead"):
            for suffix, cardinality in CARDINALITIES.items():
                name = f"{kind}{suffix}"
                out[f"/v.V/{name}"] = Handler(behaviour(kind, name), cardinality, BytesValue, BytesValue)
        return out


async def main() -> None:
    config = Configuration(http2_stream_window_size=65535, http2_connection_window_size=65535)
    server = Server([Victim()], config=config)
    await server.start("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    say(f"port {server.port}")
    await server.wait_closed()


if __name__ == "__main__":
    asyncio.run(main())
