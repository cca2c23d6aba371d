"""Coverage-guided fuzzing of the server's request path (atheris / libFuzzer).

One input is one client connection: its bytes are fed to a real
``H2ServerProtocol`` over an in-memory transport (after a valid preface and
SETTINGS, or raw, depending on the first byte), in chunks the input also
chooses; the calls it starts run on an event loop until they settle, then the
connection is dropped. A few inputs instead go straight to the sans-IO parsers
(``parse_request``, ``MessageDecoder``, ``decode_metadata``, ``parse_timeout``).

A finding is any exception out of ``data_received``/``connection_lost`` or a
parser other than its documented error, and any call task still running after
the connection is gone (a leak).

Run locally::

    python fuzz/fuzz_request_path.py -max_total_time=600

(corpus: ``fuzz/corpus/`` or the first directory given, seeded with
well-formed calls; other libFuzzer flags work as usual). Without atheris,
``python fuzz/fuzz_request_path.py --random 60`` runs the same target over
the seeds and random mutations of them. ``tests/hostile/test_fuzz.py`` runs
both for a few seconds.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import sys
from pathlib import Path
from typing import Any

try:
    import atheris
except ImportError:  # the target also runs without it (tests, random corpus)
    atheris = None

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

# Instrumented for coverage only when atheris drives the run.
if atheris is not None and "--random" not in sys.argv:
    with atheris.instrument_imports(include=["grpcasgi", "h2", "hpack", "hyperframe"]):
        import h2.exceptions  # noqa: F401
        import hpack  # noqa: F401

        from grpcasgi.config import Configuration
        from grpcasgi.const import Cardinality, Handler
        from grpcasgi.protocol.framing import FramingError, MessageDecoder
        from grpcasgi.protocol.headers import RequestRejected, parse_request
        from grpcasgi.protocol.metadata import InvalidMetadata, decode_metadata
        from grpcasgi.protocol.timeout import InvalidTimeout, parse_timeout
        from grpcasgi.server import Server
        from grpcasgi.transport.h2server import H2ServerProtocol
else:
    from grpcasgi.config import Configuration
    from grpcasgi.const import Cardinality, Handler
    from grpcasgi.protocol.framing import FramingError, MessageDecoder
    from grpcasgi.protocol.headers import RequestRejected, parse_request
    from grpcasgi.protocol.metadata import InvalidMetadata, decode_metadata
    from grpcasgi.protocol.timeout import InvalidTimeout, parse_timeout
    from grpcasgi.server import Server
    from grpcasgi.transport.h2server import H2ServerProtocol

import hpack as _hpack
from google.protobuf.wrappers_pb2 import StringValue

# Rejections are logged as warnings by design; millions of inputs would drown the output.
logging.disable(logging.CRITICAL)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


# -- the server under test ------------------------------------------------------------


async def _unary(stream: Any) -> None:
    req = await stream.recv_message()
    await stream.send_message(StringValue(value=req.value if req else ""))


async def _server_stream(stream: Any) -> None:
    req = await stream.recv_message()
    for part in (req.value if req else "").split(",")[:20]:
        await stream.send_message(StringValue(value=part))


async def _bidi(stream: Any) -> None:
    async for msg in stream:
        await stream.send_message(msg)


class Target:
    def __mapping__(self) -> dict[str, Handler]:
        return {
            "/f.F/Unary": Handler(_unary, Cardinality.UNARY_UNARY, StringValue, StringValue),
            "/f.F/Stream": Handler(_server_stream, Cardinality.UNARY_STREAM, StringValue, StringValue),
            "/f.F/Bidi": Handler(_bidi, Cardinality.STREAM_STREAM, StringValue, StringValue),
        }


class SinkTransport(asyncio.Transport):
    """Collects what the server writes; close() reports the loss like a socket would."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self.protocol: Any = None
        self.written = 0
        self.closing = False
        self.lost = False

    def write(self, data: Any) -> None:
        if self.closing:
            raise RuntimeError("write after close")
        self.written += len(data)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def _lose(self) -> None:
        if not self.lost:
            self.lost = True
            self.protocol.connection_lost(None)

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            self.loop.call_soon(self._lose)

    def abort(self) -> None:
        self.closing = True
        self._lose()

    def write_eof(self) -> None:
        self.closing = True

    def can_write_eof(self) -> bool:
        return True

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("192.0.2.1", 1234) if name == "peername" else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_reading(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: Any = None, low: Any = None) -> None:
        pass

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (0, 0)


_loop = asyncio.new_event_loop()
asyncio.set_event_loop(_loop)
_server = Server([Target()], config=Configuration(max_receive_message_length=64 * 1024))
_state = _server._make_state()


def _settle(rounds: int = 20) -> None:
    for _ in range(rounds):
        _loop.run_until_complete(asyncio.sleep(0))


def _fuzz_connection(data: bytes, with_preface: bool) -> None:
    proto = H2ServerProtocol(_state, _loop)
    transport = SinkTransport(_loop)
    transport.protocol = proto
    proto.connection_made(transport)
    if with_preface:
        proto.data_received(PREFACE + EMPTY_SETTINGS)
    # The input picks its own chunking: byte 0 of each chunk is its length.
    i = 0
    while i < len(data) and not transport.closing:
        n = data[i] + 1
        chunk = data[i + 1 : i + 1 + n]
        i += 1 + n
        if chunk:
            proto.data_received(chunk)
        _settle(2)
    _settle()
    transport.abort()
    _settle()
    stuck = [call for call in proto.calls.values() if call.task is not None and not call.task.done()]
    if stuck:
        raise AssertionError(f"call tasks still running after the connection is gone: {stuck}")
    if proto in _state.connections:
        raise AssertionError("connection still registered after connection_lost")


def _fuzz_parsers(data: bytes) -> None:
    # parse_request over a header list decoded from the input (no HPACK state).
    headers: list[tuple[bytes, bytes]] = []
    parts = data.split(b"\n")
    for line in parts[:40]:
        name, _, value = line.partition(b":" if not line.startswith(b":") else b"=")
        headers.append((name, value))
    try:
        parse_request(b"POST", (parts[0] if parts else b"").decode("latin-1"), headers)
    except RequestRejected:
        pass
    try:
        decode_metadata(headers)
    except InvalidMetadata:
        pass
    try:
        parse_timeout(data[:12])
    except InvalidTimeout:
        pass
    decoder = MessageDecoder(4096)
    try:
        step = (data[0] % 7) + 1 if data else 1
        for j in range(0, len(data), step):
            decoder.feed(data[j : j + step])
            while decoder.next_message() is not None:
                pass
    except FramingError:
        pass


def TestOneInput(data: bytes) -> None:  # noqa: N802 (libFuzzer's name)
    if not data:
        return
    mode, body = data[0] % 8, data[1:]
    if mode == 0:
        _fuzz_parsers(body)
    elif mode == 1:
        _fuzz_connection(body, with_preface=False)
    else:
        _fuzz_connection(body, with_preface=True)


# -- seed corpus -----------------------------------------------------------------------


def _frame(kind: int, flags: int, sid: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + struct.pack(">I", sid) + payload


def _chunked(stream: bytes) -> bytes:
    out = bytearray()
    for i in range(0, len(stream), 200):
        chunk = stream[i : i + 200]
        out += bytes([len(chunk) - 1]) + chunk
    return bytes(out)


def seeds() -> dict[str, bytes]:
    """Well-formed conversations, so fuzzing starts deep in the request path."""
    enc = _hpack.Encoder()

    def req(path: str, *extra: tuple[bytes, bytes]) -> bytes:
        return enc.encode(
            [
                (b":method", b"POST"),
                (b":scheme", b"http"),
                (b":path", path.encode()),
                (b":authority", b"x"),
                (b"content-type", b"application/grpc"),
                (b"te", b"trailers"),
                *extra,
            ]
        )

    msg = StringValue(value="a,b,c").SerializeToString()
    body = b"\x00" + len(msg).to_bytes(4, "big") + msg
    unary = _frame(1, 4, 1, req("/f.F/Unary", (b"grpc-timeout", b"1S"), (b"x-md", b"v"))) + _frame(0, 1, 1, body)
    stream = _frame(1, 4, 3, req("/f.F/Stream")) + _frame(0, 1, 3, body)
    bidi = _frame(1, 4, 5, req("/f.F/Bidi", (b"grpc-encoding", b"gzip"))) + _frame(0, 0, 5, body * 3) + _frame(0, 1, 5, b"")
    reset = _frame(1, 4, 7, req("/f.F/Bidi")) + _frame(3, 0, 7, b"\x00\x00\x00\x08")
    ping = _frame(6, 0, 0, b"12345678") + _frame(8, 0, 0, b"\x00\x01\x00\x00")
    return {
        "unary": b"\x02" + _chunked(unary),
        "stream": b"\x03" + _chunked(stream),
        "bidi": b"\x04" + _chunked(bidi),
        "reset": b"\x05" + _chunked(reset),
        "ping": b"\x06" + _chunked(ping + unary),
        "raw": b"\x01" + _chunked(PREFACE + EMPTY_SETTINGS + unary),
        "parsers": b"\x00/f.F/Unary\ncontent-type:application/grpc\nx-md:v\n" + body,
    }


def random_run(seconds: float, seed: int = 0) -> int:
    """Without atheris: the seeds, then random mutations of them, for ``seconds``."""
    import random
    import time

    rng = random.Random(seed)
    corpus = list(seeds().values())
    runs = 0
    end = time.monotonic() + seconds
    for data in corpus:
        TestOneInput(data)
        runs += 1
    while time.monotonic() < end:
        data = bytearray(rng.choice(corpus))
        for _ in range(rng.randint(1, 8)):
            op = rng.randrange(4)
            pos = rng.randrange(len(data) + 1)
            if op == 0 and data:
                data[min(pos, len(data) - 1)] = rng.randrange(256)
            elif op == 1:
                data[pos:pos] = rng.randbytes(rng.randint(1, 16))
            elif op == 2:
                del data[pos : pos + rng.randint(1, 16)]
            else:
                data[pos:pos] = bytes(data[rng.randrange(len(data) or 1) :][: rng.randint(1, 64)])
        TestOneInput(bytes(data))
        runs += 1
    return runs


def main() -> None:
    if len(sys.argv) >= 2 and sys.argv[1] == "--random":
        seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 5.0
        print(f"random corpus: {random_run(seconds)} inputs in {seconds} s, no finding")
        return
    if atheris is None:
        sys.exit("atheris is not installed: pip install atheris (or run with --random SECONDS)")
    args = list(sys.argv)
    dirs = [a for a in args[1:] if not a.startswith("-")]
    if not dirs:
        dirs = [str(ROOT / "corpus")]
        args.append(dirs[0])
    corpus = Path(dirs[0])
    corpus.mkdir(parents=True, exist_ok=True)
    for name, data in seeds().items():
        path = corpus / f"seed-{name}"
        if not path.exists():
            path.write_bytes(data)
    atheris.Setup(args, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
