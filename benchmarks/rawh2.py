"""A minimal HTTP/2 load client for what h2load cannot do.

h2load sends a whole request body up front, so it can drive unary,
server-streaming and client-streaming calls but not a bidirectional
ping-pong (send one message, wait for its reply, repeat). This client speaks
just enough HTTP/2 over raw asyncio streams to do that with a per-round-trip
cost far below any Python server's: frames are built with ``struct``, replies
are counted by their length prefixes, nothing is decoded.

    python rawh2.py pingpong PORT --conns 10 --duration 3   # prints JSON
    python rawh2.py hold PORT --conns 100                   # opens, prints "OPEN", waits for stdin EOF

``hold`` opens connections that each complete one unary call and then stay
open (the server keeps its per-connection state), for measuring memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import sys
import time

import hpack

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from benchhello.benchhello_pb2 import HelloRequest  # noqa: E402

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
_FRAME = struct.Struct(">HBBBI")  # 24-bit length as 16+8 bits, type, flags, stream id
_MAX_WINDOW = 2**31 - 1


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return _FRAME.pack(n >> 8, n & 0xFF, kind, flags, stream_id) + payload


def grpc_message(message: HelloRequest) -> bytes:
    body = message.SerializeToString()
    return struct.pack(">?I", False, len(body)) + body


class Connection:
    """One HTTP/2 connection: settings handled, frames read one at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int) -> None:
        self.reader = reader
        self.writer = writer
        self.encoder = hpack.Encoder()
        self.authority = f"127.0.0.1:{port}".encode()
        self.next_stream = 1

    @classmethod
    async def open(cls, port: int) -> "Connection":
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        conn = cls(reader, writer, port)
        # No push, the largest windows: this client never sends WINDOW_UPDATE.
        settings = struct.pack(">HIHI", 0x2, 0, 0x4, _MAX_WINDOW)
        writer.write(
            PREFACE + frame(SETTINGS, 0, 0, settings) + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", _MAX_WINDOW - 65535))
        )
        return conn

    def start_call(self, path: str, end: bool = False, body: bytes = b"") -> int:
        sid = self.next_stream
        self.next_stream += 2
        block = self.encoder.encode(
            [
                (b":method", b"POST"),
                (b":scheme", b"http"),
                (b":path", path.encode()),
                (b":authority", self.authority),
                (b"content-type", b"application/grpc"),
                (b"te", b"trailers"),
                (b"authorization", b"Bearer bench"),  # for the auth middleware; others ignore it
            ]
        )
        out = frame(HEADERS, END_HEADERS | (END_STREAM if end and not body else 0), sid, block)
        if body:
            out += frame(DATA, END_STREAM if end else 0, sid, body)
        self.writer.write(out)
        return sid

    async def read_frame(self) -> tuple[int, int, int, bytes]:
        """The next frame for a stream; connection frames are answered here."""
        readexactly = self.reader.readexactly
        while True:
            hi, lo, kind, flags, sid = _FRAME.unpack(await readexactly(9))
            length = (hi << 8) | lo
            payload = await readexactly(length) if length else b""
            sid &= 0x7FFFFFFF
            if kind == SETTINGS:
                if not flags & ACK:
                    self.writer.write(frame(SETTINGS, ACK, 0))
                continue
            if kind == PING:
                if not flags & ACK:
                    self.writer.write(frame(PING, ACK, 0, payload))
                continue
            if kind == GOAWAY:
                raise ConnectionError("server sent GOAWAY")
            if kind == WINDOW_UPDATE or sid == 0:
                continue
            return kind, flags, sid, payload

    async def wait_end(self, sid: int) -> None:
        """Read until the stream's END_STREAM (its trailers)."""
        while True:
            kind, flags, fsid, _ = await self.read_frame()
            if fsid == sid and (flags & END_STREAM or kind == RST_STREAM):
                return

    def close(self) -> None:
        self.writer.close()


async def pingpong(port: int, conns: int, duration: float, warmup: float) -> dict[str, float]:
    """``conns`` connections, one bidi call each, one message in flight per call."""
    message = grpc_message(HelloRequest(name="world"))
    counting = False
    stop = False
    counts = [0] * conns

    async def run(index: int) -> None:
        conn = await Connection.open(port)
        sid = conn.start_call("/benchhello.Greeter/ChatHellos")
        ping = frame(DATA, 0, sid, message)
        write = conn.writer.write
        buffered = b""
        try:
            while not stop:
                write(ping)
                while True:  # until one whole reply message is in
                    kind, flags, fsid, payload = await conn.read_frame()
                    if fsid != sid:
                        continue
                    if kind == RST_STREAM or flags & END_STREAM and kind == HEADERS:
                        raise ConnectionError("the call ended early")
                    if kind != DATA:
                        continue
                    buffered += payload
                    if len(buffered) >= 5:
                        size = 5 + int.from_bytes(buffered[1:5], "big")
                        if len(buffered) >= size:
                            buffered = buffered[size:]
                            break
                if counting:
                    counts[index] += 1
            write(frame(DATA, END_STREAM, sid))
            await conn.wait_end(sid)
        finally:
            conn.close()

    tasks = [asyncio.ensure_future(run(i)) for i in range(conns)]
    await asyncio.sleep(warmup)
    counting = True
    started = time.perf_counter()
    await asyncio.sleep(duration)
    counting = False
    elapsed = time.perf_counter() - started
    stop = True
    await asyncio.gather(*tasks)
    total = sum(counts)
    return {"round_trips": total, "seconds": elapsed, "round_trips_per_s": total / elapsed}


async def hold(port: int, conns: int) -> None:
    body = grpc_message(HelloRequest(name="world"))
    opened: list[Connection] = []

    async def one() -> None:
        conn = await Connection.open(port)
        opened.append(conn)
        sid = conn.start_call("/benchhello.Greeter/SayHello", end=True, body=body)
        await conn.wait_end(sid)

    await asyncio.gather(*(one() for _ in range(conns)))
    print("OPEN", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    for conn in opened:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("pingpong", "hold"))
    parser.add_argument("port", type=int)
    parser.add_argument("--conns", type=int, default=10)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    args = parser.parse_args()
    if args.mode == "pingpong":
        print(json.dumps(asyncio.run(pingpong(args.port, args.conns, args.duration, args.warmup))))
    else:
        asyncio.run(hold(args.port, args.conns))


if __name__ == "__main__":
    main()
