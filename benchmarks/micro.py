"""Server cost per call without sockets, for comparing two versions of the code.

Throughput on a machine shared with other work drifts by 20 % and more, and
so does CPU time; an optimisation worth 3 % cannot be seen that way. This
feeds the bundled server's connection protocol (``H2ServerProtocol``, over a
fake transport) request bytes encoded in advance the way h2load sends them
(100 streams at a time, indexed headers), so the only work measured is the
server's: HTTP/2, gRPC, the handler.

    python benchmarks/micro.py unary 5000        # CPU µs per call (noisy)
    python benchmarks/micro.py stream 20000      # per streamed message

Deterministic comparisons count instructions with valgrind (Debian
``valgrind``), taking the difference of two sizes so start-up cancels out::

    for n in 200 600; do valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python benchmarks/micro.py unary $n --reps 1 2>&1 | grep Collected; done
    # (collected(600) - collected(200)) / 400 = instructions per call;
    # compare checkouts with PYTHONPATH=/path/to/other/checkout

Long-lived objects are frozen out of the garbage collector after set-up
(``--no-freeze`` keeps them), so the rare full collection, whose cost depends
on the whole heap, does not land in one size and not the other.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import struct
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import h2.config  # noqa: E402
import h2.connection  # noqa: E402
import h2.settings  # noqa: E402

from benchhello.benchhello_pb2 import HelloRequest  # noqa: E402

BATCH = 100  # streams in flight, as h2load -c 10 -m 10


def grpc_message(message: HelloRequest) -> bytes:
    data = message.SerializeToString()
    return struct.pack(">?I", False, len(data)) + data


def client_bytes(calls: int, path: bytes, body: bytes) -> tuple[bytes, list[bytes]]:
    """The connection preface, then one chunk of request bytes per batch of calls."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.local_settings = h2.settings.Settings(
        client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1}
    )
    conn.initiate_connection()
    conn.increment_flow_control_window(2**31 - 1 - 65535)
    preface = conn.data_to_send()
    batches = []
    headers = [
        (b":method", b"POST"), (b":scheme", b"http"), (b":path", path), (b":authority", b"127.0.0.1:50051"),
        (b"content-type", b"application/grpc"), (b"te", b"trailers"), (b"user-agent", b"h2load nghttp2/1.52.0"),
    ]
    for start in range(0, calls, BATCH):
        for _ in range(min(BATCH, calls - start)):
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, headers)
            conn.send_data(sid, body, end_stream=True)
            conn.streams.pop(sid)  # never read the replies: forget the stream
        batches.append(conn.data_to_send())
    return preface, batches


class FakeTransport:
    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def run_once(preface: bytes, batches: list[bytes]) -> tuple[float, int]:
    import servers
    from grpcasgi.server import Server

    server = Server([servers.grpcasgi_service()])
    proto = server._connection_factory(asyncio.get_running_loop())()
    transport = FakeTransport()
    proto.connection_made(transport)  # type: ignore[arg-type]
    proto.data_received(preface)
    await asyncio.sleep(0)
    started = time.process_time()
    for data in batches:
        proto.data_received(data)
        while proto.calls:
            await asyncio.sleep(0)
        await asyncio.sleep(0)
    return time.process_time() - started, transport.written


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("unary", "stream"))
    parser.add_argument("n", type=int, help="calls (unary) or streamed messages (stream, 1,000 per call)")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--no-freeze", action="store_true")
    args = parser.parse_args()
    if args.mode == "unary":
        preface, batches = client_bytes(args.n, b"/benchhello.Greeter/SayHello", grpc_message(HelloRequest(name="world")))
        units = args.n
    else:
        calls = max(1, args.n // 1000)
        body = grpc_message(HelloRequest(name="world", count=1000))
        preface, batches = client_bytes(calls, b"/benchhello.Greeter/SayHellos", body)
        units = calls * 1000
    if not args.no_freeze:
        gc.collect()
        gc.freeze()
    results = []
    for _ in range(args.reps):
        seconds, written = await run_once(preface, batches)
        results.append(seconds * 1e6 / units)
    results.sort()
    what = "call" if args.mode == "unary" else "message"
    print(f"{args.mode}: {results[0]:.1f} µs per {what} (best of {args.reps}; median {results[len(results) // 2]:.1f}), {written} bytes out")


if __name__ == "__main__":
    asyncio.run(main())
