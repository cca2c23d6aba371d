"""Helpers shared by the core tests: a service built from plain functions
(``common_support.Service``, re-exported), the echo service, grpcio
multicallables, a raw HTTP/2 client (``h2`` on a socket) for requests no
well-behaved client would send, and the bad requests every server must answer
with a clear status (``tests/asgi`` sends the same ones through Hypercorn).
"""

from __future__ import annotations

import asyncio
import gzip
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import h2.config
import h2.connection
import h2.events
from google.protobuf import wrappers_pb2

from common_support import Service as Service  # re-exported: the core tests import it from here
from grpcasgi.const import Cardinality
from grpcasgi.protocol.status import Status

SV = wrappers_pb2.StringValue
BV = wrappers_pb2.BytesValue

UU = Cardinality.UNARY_UNARY
US = Cardinality.UNARY_STREAM
SU = Cardinality.STREAM_UNARY
SS = Cardinality.STREAM_STREAM


async def _echo_unary(stream: Any) -> None:
    req = await stream.recv_message()
    await stream.send_message(SV(value=req.value))


async def _echo_server_stream(stream: Any) -> None:
    req = await stream.recv_message()
    for part in req.value.split(","):
        await stream.send_message(SV(value=part))


async def _echo_client_stream(stream: Any) -> None:
    parts = [m.value async for m in stream]
    await stream.send_message(SV(value=",".join(parts)))


async def _echo_bidi(stream: Any) -> None:
    async for m in stream:
        await stream.send_message(SV(value=m.value.upper()))


async def _echo_bytes(stream: Any) -> None:
    req = await stream.recv_message()
    await stream.send_message(BV(value=req.value))


def echo_service() -> Service:
    """``core.Echo``: the four cardinalities over StringValue, plus a BytesValue echo."""
    return Service(
        "core.Echo",
        Unary=(_echo_unary, UU),
        ServerStream=(_echo_server_stream, US),
        ClientStream=(_echo_client_stream, SU),
        Bidi=(_echo_bidi, SS),
        Bytes=(_echo_bytes, UU, BV, BV),
    )


def grpcio_method(ch: Any, path: str, cardinality: Cardinality, req: Any = SV, rep: Any = SV) -> Any:
    """A grpc.aio multicallable for ``path``."""
    kind = {
        UU: ch.unary_unary,
        US: ch.unary_stream,
        SU: ch.stream_unary,
        SS: ch.stream_stream,
    }[cardinality]
    return kind(path, request_serializer=req.SerializeToString, response_deserializer=rep.FromString)


def grpc_request_headers(path: str = "/core.Echo/Unary", **overrides: Any) -> list[tuple[bytes, bytes]]:
    """Request headers of a well-formed gRPC call; ``overrides`` replace (None removes) or add headers.

    Names use ``_`` for ``-`` (``grpc_timeout="1S"``); ``method=`` sets ``:method``.
    """
    headers: dict[str, str | bytes | None] = {
        ":method": "POST",
        ":scheme": "http",
        ":path": path,
        ":authority": "127.0.0.1",
        "content-type": "application/grpc",
        "te": "trailers",
    }
    extra: list[tuple[bytes, bytes]] = []
    for key, value in overrides.items():
        name = ":method" if key == "method" else key.replace("_", "-")
        if name in headers:
            headers[name] = value
        elif value is not None:
            extra.append((name.encode(), value if isinstance(value, bytes) else value.encode()))
    out = [(k.encode(), v if isinstance(v, bytes) else v.encode()) for k, v in headers.items() if v is not None]
    return out + extra


def frame(payload: bytes, compressed: bool = False) -> bytes:
    return bytes([1 if compressed else 0]) + len(payload).to_bytes(4, "big") + payload


# Bad requests any server (bundled or behind an ASGI server) must answer with a
# clear status and a log line saying why, then go on serving the connection:
# (id, header overrides, body, status, text in grpc-message, text in the log line).
# Each suite adds the cases that depend on its limits.
BadInputCase = tuple[str, dict[str, str], bytes, Status, str, str]

BAD_MESSAGE_CASES: list[BadInputCase] = [
    ("truncated-message", {}, frame(b"\x0a\x05hello")[:-2], Status.INTERNAL, "incomplete message", "inside a message"),
    ("truncated-prefix", {}, b"\x00\x00\x00", Status.INTERNAL, "incomplete message", "inside a message"),
    (
        "compressed-without-encoding",
        {},
        frame(gzip.compress(b"x"), compressed=True),
        Status.INTERNAL,
        "no grpc-encoding",
        "without grpc-encoding",
    ),
    ("bad-flag-byte", {}, b"\x02\x00\x00\x00\x00", Status.INTERNAL, "flag", "flag"),
    ("corrupt-gzip", {"grpc_encoding": "gzip"}, frame(b"not gzip", compressed=True), Status.INTERNAL, "decompress", "decompress"),
    ("undecodable-protobuf", {}, frame(b"\xff\xff\xff"), Status.INTERNAL, "decode", "decode"),
]


def bad_header_cases(body: bytes) -> list[BadInputCase]:
    """Requests whose headers are bad; ``body`` is a valid request message."""
    return [
        ("malformed-timeout", {"grpc_timeout": "soon"}, body, Status.INTERNAL, "grpc-timeout", "grpc-timeout"),
        ("timeout-bad-unit", {"grpc_timeout": "10X"}, body, Status.INTERNAL, "grpc-timeout", "grpc-timeout"),
        ("oversized-timeout", {"grpc_timeout": "123456789S"}, body, Status.INTERNAL, "grpc-timeout", "grpc-timeout"),
        ("invalid-metadata-key", {"x@key": "v"}, body, Status.INTERNAL, "metadata", "metadata"),
        ("invalid-metadata-value", {"x-key": "caf\xe9"}, body, Status.INTERNAL, "metadata", "metadata"),
        ("invalid-binary-metadata", {"x-key-bin": "!!!not base64!!!"}, body, Status.INTERNAL, "metadata", "metadata"),
        ("unsupported-encoding", {"grpc_encoding": "snappy"}, body, Status.UNIMPLEMENTED, "snappy", "snappy"),
    ]


@dataclass
class RawResponse:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    data: bytes = b""
    trailers: dict[bytes, bytes] = field(default_factory=dict)
    ended: bool = False
    reset: int | None = None

    @property
    def http_status(self) -> int:
        return int(self.headers[b":status"])

    @property
    def grpc_status(self) -> int | None:
        """grpc-status from the trailers (or a Trailers-Only HEADERS frame)."""
        value = self.trailers.get(b"grpc-status", self.headers.get(b"grpc-status"))
        return int(value) if value is not None else None

    @property
    def grpc_message(self) -> str:
        return (self.trailers.get(b"grpc-message") or self.headers.get(b"grpc-message") or b"").decode()


_Raw = TypeVar("_Raw", bound="RawConnectionBase")


class RawConnectionBase:
    """What the raw HTTP/2 test clients share: no task of their own, so frames
    are read only while a test awaits :meth:`response` (or :meth:`read_until`),
    which keeps the test in control of timing.

    Subclasses set ``reader``, ``writer``, ``conn`` (an ``H2Connection``),
    ``responses`` and ``closed`` in ``__init__(reader, writer)``, and define
    :meth:`flush` and :meth:`read_once`; :meth:`record` fills a stream's
    :class:`RawResponse` from an event.
    """

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    conn: h2.connection.H2Connection
    responses: dict[int, RawResponse]
    closed: bool

    def flush(self) -> None:
        raise NotImplementedError

    async def read_once(self) -> None:
        raise NotImplementedError

    @classmethod
    async def connect(cls: type[_Raw], port: int, host: str = "127.0.0.1") -> _Raw:
        reader, writer = await asyncio.open_connection(host, port)
        raw = cls(reader, writer)
        raw.conn.initiate_connection()
        raw.flush()
        return raw

    def record(self, event: Any) -> None:
        """Note what ``event`` says of its stream's response: headers, data, trailers, end or reset."""
        resp = self.responses.get(getattr(event, "stream_id", 0) or 0)
        if resp is None:
            return
        if isinstance(event, h2.events.ResponseReceived):
            resp.headers = dict(event.headers)
        elif isinstance(event, h2.events.TrailersReceived):
            resp.trailers = dict(event.headers)
        elif isinstance(event, h2.events.DataReceived):
            resp.data += event.data
        elif isinstance(event, h2.events.StreamEnded):
            resp.ended = True
        elif isinstance(event, h2.events.StreamReset):
            resp.reset = event.error_code

    async def read_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        async def loop() -> None:
            while not predicate() and not self.closed:
                await self.read_once()

        await asyncio.wait_for(loop(), timeout)

    async def response(self, sid: int, timeout: float = 5.0) -> RawResponse:
        """Read until stream ``sid`` ended (END_STREAM or RST_STREAM) or the connection closed."""
        resp = self.responses[sid]
        await self.read_until(lambda: resp.ended or resp.reset is not None, timeout)
        return resp

    async def close(self) -> None:
        if not self.writer.is_closing():
            try:
                self.conn.close_connection()
                self.flush()
            except Exception:
                pass
            self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass


class RawH2(RawConnectionBase):
    """A minimal HTTP/2 client on a real socket that credits back all it receives."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None, validate_outbound_headers=False)
        )
        self.responses: dict[int, RawResponse] = {}
        self.events: list[Any] = []
        self.closed = False

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.writer.write(data)

    def request(self, headers: list[tuple[bytes, bytes]], body: bytes = b"", end: bool = True) -> int:
        sid = self.conn.get_next_available_stream_id()
        self.responses[sid] = RawResponse()
        self.conn.send_headers(sid, headers, end_stream=end and not body)
        if body:
            self.conn.send_data(sid, body, end_stream=end)
        self.flush()
        return sid

    def send_data(self, sid: int, data: bytes, end: bool = False) -> None:
        self.conn.send_data(sid, data, end_stream=end)
        self.flush()

    def end(self, sid: int) -> None:
        self.conn.end_stream(sid)
        self.flush()

    async def read_once(self) -> None:
        data = await self.reader.read(65536)
        if not data:
            self.closed = True
            return
        for event in self.conn.receive_data(data):
            self.events.append(event)
            self.record(event)
            if isinstance(event, h2.events.DataReceived):
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        self.flush()


@dataclass
class Outcome:
    """What a client saw of one call, in a form both clients can fill."""

    status: int
    message: str | None
    replies: list[Any]
    initial: list[tuple[str, Any]]
    trailing: list[tuple[str, Any]]
    #: Ours: GRPCError.details (a list of messages). grpcio: the google.rpc.Status
    #: decoded from the grpc-status-details-bin trailer.
    details: Any = None


async def call_ours(
    channel: Any,
    path: str,
    cardinality: Cardinality,
    requests: list[Any],
    *,
    metadata: Any = None,
    timeout: float | None = None,
    req: Any = None,
    rep: Any = None,
) -> Outcome:
    from grpcasgi.exceptions import GRPCError

    req = req or wrappers_pb2.StringValue
    rep = rep or wrappers_pb2.StringValue
    replies: list[Any] = []
    async with channel.request(path, cardinality, req, rep, metadata=metadata, timeout=timeout) as stream:
        try:
            await stream.send_request()
            for i, message in enumerate(requests):
                await stream.send_message(message, end=i == len(requests) - 1)
            if not requests:
                await stream.end()
            await stream.recv_initial_metadata()
            async for reply in stream:
                replies.append(reply)
            await stream.recv_trailing_metadata()
        except GRPCError as exc:
            return Outcome(
                exc.status.value,
                exc.message,
                replies,
                list((stream.initial_metadata or {}).items()),
                list((stream.trailing_metadata or {}).items()),
                exc.details,
            )
        return Outcome(0, None, replies, list(stream.initial_metadata.items()), list(stream.trailing_metadata.items()))


async def call_grpcio(
    channel: Any,
    path: str,
    cardinality: Cardinality,
    requests: list[Any],
    *,
    metadata: Any = None,
    timeout: float | None = None,
    req: Any = None,
    rep: Any = None,
) -> Outcome:
    import grpc

    method = grpcio_method(channel, path, cardinality, req or wrappers_pb2.StringValue, rep or wrappers_pb2.StringValue)
    md = list(metadata.items() if hasattr(metadata, "items") else metadata) if metadata else None
    arg: Any = iter(requests) if cardinality.client_streaming else requests[0]
    call = method(arg, metadata=md, timeout=timeout)
    replies: list[Any] = []
    try:
        if cardinality.server_streaming:
            async for reply in call:
                replies.append(reply)
        else:
            replies.append(await call)
    except grpc.aio.AioRpcError as exc:
        trailing = list(exc.trailing_metadata() or ())
        details = None
        for key, value in trailing:
            if key == "grpc-status-details-bin":
                from google.rpc import status_pb2

                details = status_pb2.Status.FromString(value)
        return Outcome(
            exc.code().value[0],
            exc.details(),
            replies,
            list(exc.initial_metadata() or ()),
            [(k, v) for k, v in trailing if k != "grpc-status-details-bin"],
            details,
        )
    initial = await call.initial_metadata()
    trailing = await call.trailing_metadata()
    return Outcome(0, None, replies, list(initial or ()), list(trailing or ()))
