"""Message compression end to end, over loopback sockets.

Our client and server with gzip and deflate, grpcio clients and servers
exchanging gzip with ours in both directions, the negotiation rules
(``grpc-accept-encoding`` both ways, answering only in an accepted encoding,
UNIMPLEMENTED for an unknown request encoding), per-message flags both ways,
and decompression bombs refused on both sides.

(Named ``test_compression_e2e`` because ``tests/protocol/test_compression.py``
holds the sans-IO unit tests and test modules share one namespace.)
"""

from __future__ import annotations

import asyncio
import gzip
import zlib
from typing import Any, AsyncIterator

import grpc
import h2.config
import h2.connection
import h2.events
import pytest
from google.protobuf.wrappers_pb2 import BytesValue, StringValue

from grpcasgi import Cardinality, GRPCError, Handler, Status
from grpcasgi.client import Channel, StreamStreamMethod, UnaryUnaryMethod
from grpcasgi.server import Server, Stream

BIG = 5 * 1024 * 1024  # past the default 4 MiB receive limit


class Svc:
    """Records what the server saw; replies as the request asks."""

    def __init__(self) -> None:
        self.encodings: list[str | None] = []
        self.accept: list[tuple[str, ...]] = []
        self.flags: list[bool | None] = []

    def _record(self, stream: Stream[Any, Any]) -> None:
        self.encodings.append(stream.scope["encoding"])
        self.accept.append(stream.scope["accept_encoding"])

    async def Echo(self, stream: Stream[StringValue, StringValue]) -> None:
        self._record(stream)
        request = await stream.recv_message()
        assert request is not None
        self.flags.append(stream.last_message_compressed)
        await stream.send_message(request)

    async def Compressed(self, stream: Stream[StringValue, StringValue]) -> None:
        """Asks for a gzip response whatever the request used."""
        self._record(stream)
        request = await stream.recv_message()
        assert request is not None
        stream.set_compression("gzip")
        await stream.send_message(request)

    async def Bidi(self, stream: Stream[StringValue, StringValue]) -> None:
        """Replies ``value`` compressed unless the request's value starts with "plain"."""
        self._record(stream)
        stream.set_compression("gzip")
        async for request in stream:
            self.flags.append(stream.last_message_compressed)
            await stream.send_message(request, compress=not request.value.startswith("plain"))

    async def Bomb(self, stream: Stream[StringValue, BytesValue]) -> None:
        await stream.recv_message()
        stream.set_compression("gzip")
        await stream.send_message(BytesValue(value=bytes(BIG)))

    async def Sink(self, stream: Stream[BytesValue, StringValue]) -> None:
        self._record(stream)
        request = await stream.recv_message()
        assert request is not None
        await stream.send_message(StringValue(value=str(len(request.value))))

    def __mapping__(self) -> dict[str, Handler]:
        S, B = StringValue, BytesValue
        return {
            "/c.Svc/Echo": Handler(self.Echo, Cardinality.UNARY_UNARY, S, S),
            "/c.Svc/Compressed": Handler(self.Compressed, Cardinality.UNARY_UNARY, S, S),
            "/c.Svc/Bidi": Handler(self.Bidi, Cardinality.STREAM_STREAM, S, S),
            "/c.Svc/Bomb": Handler(self.Bomb, Cardinality.UNARY_UNARY, S, B),
            "/c.Svc/Sink": Handler(self.Sink, Cardinality.UNARY_UNARY, B, S),
        }


@pytest.fixture
async def svc() -> Svc:
    return Svc()


@pytest.fixture
async def server(grpc_server: Any, svc: Svc) -> Server:
    server: Server = await grpc_server([svc])
    return server


async def unary_call(channel: Channel, path: str, request: Any, reply_type: Any = StringValue, **kwargs: Any) -> tuple[Any, bool | None]:
    """One unary call; returns the reply and whether it arrived compressed."""
    async with channel.request(path, Cardinality.UNARY_UNARY, type(request), reply_type, timeout=10, **kwargs) as stream:
        await stream.send_message(request, end=True)
        reply = await stream.recv_message()
        await stream.recv_trailing_metadata()
        return reply, stream.last_message_compressed


# -- a raw HTTP/2 client, to control and observe headers and flags ------------------


class Raw:
    """Headers, DATA and trailers of one call made with hand-written headers."""

    def __init__(self) -> None:
        self.headers: dict[bytes, bytes] = {}
        self.trailers: dict[bytes, bytes] = {}
        self.data = b""

    @property
    def status(self) -> int:
        return int(self.trailers.get(b"grpc-status", self.headers.get(b"grpc-status", b"-1")))

    def messages(self) -> list[tuple[bool, bytes]]:
        out, data = [], self.data
        while data:
            length = int.from_bytes(data[1:5], "big")
            out.append((data[0] == 1, data[5 : 5 + length]))
            data = data[5 + length :]
        return out


def prefixed(payload: bytes, compressed: bool = False) -> bytes:
    return bytes([int(compressed)]) + len(payload).to_bytes(4, "big") + payload


async def raw_call(port: int, path: str, body: bytes, **headers: str) -> Raw:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    request = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", path.encode()),
        (b":authority", b"127.0.0.1"),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
        *((k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()),
    ]
    conn.send_headers(1, request)
    conn.send_data(1, body, end_stream=True)
    writer.write(conn.data_to_send())
    result = Raw()
    try:
        ended = False
        while not ended:
            data = await asyncio.wait_for(reader.read(65536), 10)
            assert data, "connection closed before the response ended"
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    result.headers = dict(event.headers)
                elif isinstance(event, h2.events.TrailersReceived):
                    result.trailers = dict(event.headers)
                elif isinstance(event, h2.events.DataReceived):
                    result.data += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, 1)
                elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                    ended = True
            writer.write(conn.data_to_send())
    finally:
        writer.close()
    return result


# -- our client and server ------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_our_client_and_server(server: Server, svc: Svc, grpc_channel: Any, encoding: str) -> None:
    channel = grpc_channel(server, compression=encoding)
    reply, compressed = await unary_call(channel, "/c.Svc/Echo", StringValue(value="x" * 1000))
    assert reply.value == "x" * 1000
    assert compressed is True  # answered in the request's encoding
    assert svc.encodings == [encoding]
    assert svc.flags == [True]


async def test_accept_encoding_is_advertised_both_ways(server: Server, svc: Svc, grpc_channel: Any) -> None:
    await unary_call(grpc_channel(server), "/c.Svc/Echo", StringValue(value="a"))
    assert svc.accept == [("identity", "gzip", "deflate")]  # what our client sent
    raw = await raw_call(server.port or 0, "/c.Svc/Echo", prefixed(StringValue(value="a").SerializeToString()))
    assert raw.headers[b"grpc-accept-encoding"] == b"identity,gzip,deflate"  # what our server sent
    assert b"grpc-encoding" not in raw.headers


async def test_per_call_compression_overrides_the_channel(server: Server, svc: Svc, grpc_channel: Any) -> None:
    gzip_channel = grpc_channel(server, compression="gzip")
    _, compressed = await unary_call(gzip_channel, "/c.Svc/Echo", StringValue(value="a"), compression="identity")
    assert compressed is False
    plain_channel = grpc_channel(server)
    _, compressed = await unary_call(plain_channel, "/c.Svc/Echo", StringValue(value="a"), compression="deflate")
    assert compressed is True
    _, compressed = await unary_call(plain_channel, "/c.Svc/Echo", StringValue(value="a"))
    assert compressed is False
    assert svc.encodings == [None, "deflate", None]
    assert svc.flags == [False, True, False]


async def test_server_chosen_compression(server: Server, grpc_channel: Any) -> None:
    reply, compressed = await unary_call(grpc_channel(server), "/c.Svc/Compressed", StringValue(value="z" * 500))
    assert reply.value == "z" * 500
    assert compressed is True


async def test_server_compresses_only_in_an_encoding_the_client_accepts(server: Server) -> None:
    body = StringValue(value="y" * 300).SerializeToString()
    port = server.port or 0
    # The handler asks for gzip, the client accepts only identity.
    raw = await raw_call(port, "/c.Svc/Compressed", prefixed(body), grpc_accept_encoding="identity")
    assert raw.status == 0
    assert b"grpc-encoding" not in raw.headers
    assert raw.messages() == [(False, body)]
    # The client sent deflate but accepts only identity back.
    raw = await raw_call(
        port,
        "/c.Svc/Echo",
        prefixed(zlib.compress(body), True),
        grpc_encoding="deflate",
        grpc_accept_encoding="identity",
    )
    assert raw.status == 0
    assert raw.messages() == [(False, body)]
    # A client that lists gzip gets gzip.
    raw = await raw_call(port, "/c.Svc/Compressed", prefixed(body), grpc_accept_encoding="gzip")
    assert raw.headers[b"grpc-encoding"] == b"gzip"
    ((flag, payload),) = raw.messages()
    assert flag and gzip.decompress(payload) == body


async def test_unsupported_request_encoding_is_unimplemented(server: Server, svc: Svc) -> None:
    raw = await raw_call(server.port or 0, "/c.Svc/Echo", prefixed(b"\x01\x02", True), grpc_encoding="br")
    assert raw.status == Status.UNIMPLEMENTED.value
    assert b"'br'" in raw.headers[b"grpc-message"]
    assert raw.headers[b"grpc-accept-encoding"] == b"identity,gzip,deflate"
    assert svc.encodings == []  # the handler never ran


async def test_compressed_flag_without_an_encoding_is_internal(server: Server) -> None:
    body = gzip.compress(StringValue(value="a").SerializeToString())
    raw = await raw_call(server.port or 0, "/c.Svc/Echo", prefixed(body, True))
    assert raw.status == Status.INTERNAL.value


async def test_corrupt_compressed_message_is_internal(server: Server) -> None:
    raw = await raw_call(server.port or 0, "/c.Svc/Echo", prefixed(b"not gzip at all", True), grpc_encoding="gzip")
    assert raw.status == Status.INTERNAL.value


async def test_per_message_compression_both_ways(server: Server, svc: Svc, grpc_channel: Any) -> None:
    channel = grpc_channel(server, compression="gzip")
    seen: list[tuple[str, bool | None]] = []
    method = StreamStreamMethod(channel, "/c.Svc/Bidi", StringValue, StringValue)
    async with method.open(timeout=10) as stream:
        await stream.send_request()
        for value, compress in (("zipped", True), ("plain", False), ("zipped again", True)):
            await stream.send_message(StringValue(value=value), compress=compress)
            reply = await stream.recv_message()
            assert reply is not None
            seen.append((reply.value, stream.last_message_compressed))
        await stream.end()
        assert await stream.recv_message() is None
    assert svc.flags == [True, False, True]  # what the server received
    assert seen == [("zipped", True), ("plain", False), ("zipped again", True)]  # what the client received


async def test_decompression_bomb_refused_by_the_server(server: Server, grpc_channel: Any) -> None:
    assert len(gzip.compress(bytes(BIG))) < 10 * 1024  # a few KB on the wire
    channel = grpc_channel(server, compression="gzip")
    with pytest.raises(GRPCError) as info:
        await unary_call(channel, "/c.Svc/Sink", BytesValue(value=bytes(BIG)))
    assert info.value.status is Status.RESOURCE_EXHAUSTED
    assert "decompressed message larger than max" in (info.value.message or "")
    # The connection is still fine.
    reply, _ = await unary_call(channel, "/c.Svc/Sink", BytesValue(value=bytes(1000)))
    assert reply.value == "1000"


async def test_decompression_bomb_refused_by_the_client(server: Server, grpc_channel: Any) -> None:
    channel = grpc_channel(server)
    with pytest.raises(GRPCError) as info:
        await unary_call(channel, "/c.Svc/Bomb", StringValue(), BytesValue)
    assert info.value.status is Status.RESOURCE_EXHAUSTED
    assert "decompressed message larger than max" in (info.value.message or "")
    reply, _ = await unary_call(channel, "/c.Svc/Echo", StringValue(value="still fine"))
    assert reply.value == "still fine"


# -- grpcio peers -------------------------------------------------------------------------


def _grpcio_unary(channel: grpc.aio.Channel, path: str, req: Any = StringValue, rep: Any = StringValue) -> Any:
    return channel.unary_unary(path, request_serializer=req.SerializeToString, response_deserializer=rep.FromString)


async def test_grpcio_client_sends_gzip_to_our_server(server: Server, svc: Svc) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}", compression=grpc.Compression.Gzip) as channel:
        reply = await _grpcio_unary(channel, "/c.Svc/Echo")(StringValue(value="g" * 2000), timeout=10)
        assert reply.value == "g" * 2000
        stream = channel.stream_stream(
            "/c.Svc/Bidi", request_serializer=StringValue.SerializeToString, response_deserializer=StringValue.FromString
        )
        # (grpc-core sends a message uncompressed when compressing does not
        # make it smaller, so the messages here are compressible.)
        values = ["one" * 300, "two" * 300]
        call = stream(iter([StringValue(value=v) for v in values]), timeout=10)
        assert [r.value async for r in call] == values
    # Per call, on an uncompressed channel.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        reply = await _grpcio_unary(channel, "/c.Svc/Echo")(
            StringValue(value="h" * 1000), timeout=10, compression=grpc.Compression.Gzip
        )
        assert reply.value == "h" * 1000
        await _grpcio_unary(channel, "/c.Svc/Echo")(StringValue(value="i" * 1000), timeout=10)
    assert svc.encodings == ["gzip", "gzip", "gzip", None]
    assert svc.flags == [True, True, True, True, False]
    assert all("gzip" in accepted for accepted in svc.accept)


async def test_grpcio_client_reads_our_gzip_responses(server: Server) -> None:
    # grpcio does not expose message flags; it must decode what we compressed.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        reply = await _grpcio_unary(channel, "/c.Svc/Compressed")(StringValue(value="q" * 5000), timeout=10)
        assert reply.value == "q" * 5000
        stream = channel.stream_stream(
            "/c.Svc/Bidi", request_serializer=StringValue.SerializeToString, response_deserializer=StringValue.FromString
        )
        call = stream(iter([StringValue(value="zz" * 500), StringValue(value="plain")]), timeout=10)
        assert [r.value async for r in call] == ["zz" * 500, "plain"]


async def test_grpcio_client_refuses_our_bomb(server: Server) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _grpcio_unary(channel, "/c.Svc/Bomb", rep=BytesValue)(StringValue(), timeout=10)
    assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.fixture
async def grpcio_server() -> AsyncIterator[tuple[int, list[str]]]:
    """A grpc.aio server compressing its responses with gzip; records request sizes it saw."""
    seen: list[str] = []

    async def echo(request: StringValue, context: grpc.aio.ServicerContext) -> StringValue:
        seen.append(request.value)
        return request

    async def bomb(request: StringValue, context: grpc.aio.ServicerContext) -> BytesValue:
        return BytesValue(value=bytes(BIG))

    handler = grpc.method_handlers_generic_handler(
        "c.Svc",
        {
            "Echo": grpc.unary_unary_rpc_method_handler(
                echo, request_deserializer=StringValue.FromString, response_serializer=StringValue.SerializeToString
            ),
            "Bomb": grpc.unary_unary_rpc_method_handler(
                bomb, request_deserializer=StringValue.FromString, response_serializer=BytesValue.SerializeToString
            ),
        },
    )
    server = grpc.aio.server(compression=grpc.Compression.Gzip)
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port, seen
    finally:
        await server.stop(None)


async def test_our_client_with_a_grpcio_gzip_server(grpcio_server: tuple[int, list[str]], grpc_channel: Any) -> None:
    port, seen = grpcio_server
    # grpcio compresses its responses with gzip; we read the flag and decode.
    reply, compressed = await unary_call(grpc_channel("127.0.0.1", port), "/c.Svc/Echo", StringValue(value="p" * 3000))
    assert reply.value == "p" * 3000
    assert compressed is True
    # Our gzip requests are understood by grpcio.
    for encoding in ("gzip", "deflate"):
        reply, _ = await unary_call(
            grpc_channel("127.0.0.1", port, compression=encoding), "/c.Svc/Echo", StringValue(value=encoding * 100)
        )
        assert reply.value == encoding * 100
    assert seen == ["p" * 3000, "gzip" * 100, "deflate" * 100]


async def test_our_client_refuses_a_grpcio_bomb(grpcio_server: tuple[int, list[str]], grpc_channel: Any) -> None:
    port, _ = grpcio_server
    channel = grpc_channel("127.0.0.1", port)
    with pytest.raises(GRPCError) as info:
        await unary_call(channel, "/c.Svc/Bomb", StringValue(), BytesValue)
    assert info.value.status is Status.RESOURCE_EXHAUSTED


async def test_unary_method_objects_pass_compression(server: Server, svc: Svc, grpc_channel: Any) -> None:
    echo = UnaryUnaryMethod(grpc_channel(server), "/c.Svc/Echo", StringValue, StringValue)
    assert (await echo(StringValue(value="m"), compression="gzip", timeout=10)).value == "m"
    assert svc.encodings == ["gzip"]


def test_example_runs() -> None:
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, str(root / "examples" / "compression" / "main.py")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = [line.split(":", 1)[1].strip() for line in result.stdout.splitlines()]
    assert lines == [
        "[(10000, False)]",
        "[(10000, True)]",
        "[(10000, False)]",
        "[(20000, True)]",
        "[(20000, True), (1024, False)]",
    ]


# -- the ASGI runtime (Hypercorn, in-process) follows the same rules ------------------------


@pytest.fixture
async def asgi_port(svc: Svc) -> AsyncIterator[int]:
    """Hypercorn serving ``App([svc])`` on a pre-bound (already listening) loopback socket."""
    import socket

    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    from grpcasgi.asgi import App

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]  # Hypercorn takes the descriptor over (and closes it)
    config.loglevel = "WARNING"
    stop = asyncio.Event()
    task = asyncio.ensure_future(serve(App([svc]), config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    try:
        yield port
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_asgi_runtime_follows_the_same_rules(asgi_port: int, svc: Svc, grpc_channel: Any) -> None:
    channel = grpc_channel("127.0.0.1", asgi_port, compression="gzip")
    # Answer in kind; per-message flags both ways.
    reply, compressed = await unary_call(channel, "/c.Svc/Echo", StringValue(value="a" * 100))
    assert (reply.value, compressed) == ("a" * 100, True)
    seen = []
    async with channel.request("/c.Svc/Bidi", Cardinality.STREAM_STREAM, StringValue, StringValue, timeout=10) as stream:
        await stream.send_request()
        for value, compress in (("zipped", True), ("plain", False)):
            await stream.send_message(StringValue(value=value), compress=compress)
            await stream.recv_message()
            seen.append(stream.last_message_compressed)
        await stream.end()
        assert await stream.recv_message() is None
    assert seen == [True, False]
    assert svc.flags == [True, True, False]
    # The handler's choice only in an accepted encoding.
    body = StringValue(value="y" * 300).SerializeToString()
    raw = await raw_call(asgi_port, "/c.Svc/Compressed", prefixed(body), grpc_accept_encoding="identity")
    assert raw.status == 0 and raw.messages() == [(False, body)]
    # Unknown request encoding, and a decompression bomb.
    raw = await raw_call(asgi_port, "/c.Svc/Echo", prefixed(b"\x01", True), grpc_encoding="br")
    assert raw.status == Status.UNIMPLEMENTED.value
    assert raw.headers[b"grpc-accept-encoding"] == b"identity,gzip,deflate"
    with pytest.raises(GRPCError) as info:
        await unary_call(channel, "/c.Svc/Sink", BytesValue(value=bytes(BIG)))
    assert info.value.status is Status.RESOURCE_EXHAUSTED
