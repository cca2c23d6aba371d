"""The standard gRPC interop client on grpcasgi.

Each test case of grpc's ``doc/interop-test-descriptions.md`` that needs no
cloud credentials or caching proxy is an ``async def case(stub) -> None`` in
:data:`CASES`; it raises
:class:`InteropFailure` (an ``AssertionError``) with what differed. Run them
against any interop server::

    python -m grpcasgi.interop.client --server_host 127.0.0.1 --server_port 10000 --test_case all

The exit status is 0 when every selected case passed, 1 otherwise (the
failure is printed on stderr), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import ssl as _ssl
import sys
import time
from typing import Any, Awaitable, Callable, Sequence

from ..client import Channel
from ..exceptions import GRPCError
from ..protocol.metadata import MetadataValue
from ..protocol.status import Status
from .protos.grpc.testing import empty_pb2, messages_pb2, test_grpc
from .server import INITIAL_METADATA_KEY, TRAILING_METADATA_KEY, parse_bool

__all__ = ["CASES", "InteropFailure", "run_cases", "main"]

Stub = test_grpc.TestServiceStub
Case = Callable[[Stub], Awaitable[None]]

#: Sizes fixed by the interop spec.
LARGE_REQUEST_SIZE = 271828
LARGE_RESPONSE_SIZE = 314159
STREAM_REQUEST_SIZES = (27182, 8, 1828, 45904)
STREAM_RESPONSE_SIZES = (31415, 9, 2653, 58979)
COMPRESSED_STREAM_SIZES = (27182, 45904)
SERVER_COMPRESSED_STREAM_SIZES = (31415, 92653)
SPECIAL_STATUS_MESSAGE = "\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \U0001f608\t\n"
INITIAL_METADATA_VALUE = "test_initial_metadata_value"
TRAILING_METADATA_VALUE = b"\xab\xab\xab"


class InteropFailure(AssertionError):
    """A test case observed something other than what the spec requires."""


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise InteropFailure(message)


def _payload(size: int) -> messages_pb2.Payload:
    return messages_pb2.Payload(type=messages_pb2.COMPRESSABLE, body=bytes(size))


def _check_payload(payload: messages_pb2.Payload, size: int, what: str) -> None:
    _check(payload.type == messages_pb2.COMPRESSABLE, f"{what}: payload type {payload.type}, expected COMPRESSABLE")
    _check(len(payload.body) == size, f"{what}: payload of {len(payload.body)} bytes, expected {size}")
    _check(payload.body == bytes(size), f"{what}: payload body is not all zeros")


def _check_status(exc: GRPCError, status: Status, message: str | None, what: str) -> None:
    _check(exc.status is status, f"{what}: status {exc.status.name}, expected {status.name} ({exc.message!r})")
    if message is not None:
        _check(exc.message == message, f"{what}: status message {exc.message!r}, expected {message!r}")


def _channel(stub: Stub) -> Channel:
    """The channel behind a generated stub (every method object keeps it)."""
    return stub.EmptyCall.channel


def _duplex_request(response_size: int | None, payload_size: int | None) -> messages_pb2.StreamingOutputCallRequest:
    request = messages_pb2.StreamingOutputCallRequest(response_type=messages_pb2.COMPRESSABLE)
    if response_size is not None:
        request.response_parameters.add(size=response_size)
    if payload_size is not None:
        request.payload.CopyFrom(_payload(payload_size))
    return request


# -- the cases -------------------------------------------------------------------------


async def empty_unary(stub: Stub) -> None:
    reply = await stub.EmptyCall(empty_pb2.Empty())
    _check(isinstance(reply, empty_pb2.Empty), f"EmptyCall returned {type(reply).__name__}, not Empty")


async def large_unary(stub: Stub) -> None:
    request = messages_pb2.SimpleRequest(
        response_type=messages_pb2.COMPRESSABLE,
        response_size=LARGE_RESPONSE_SIZE,
        payload=_payload(LARGE_REQUEST_SIZE),
    )
    reply = await stub.UnaryCall(request)
    _check_payload(reply.payload, LARGE_RESPONSE_SIZE, "UnaryCall")


async def client_streaming(stub: Stub) -> None:
    async with stub.StreamingInputCall.open() as stream:
        await stream.send_request()
        for size in STREAM_REQUEST_SIZES:
            await stream.send_message(messages_pb2.StreamingInputCallRequest(payload=_payload(size)))
        await stream.end()
        reply = await stream.recv_message()
        await stream.recv_trailing_metadata()
    _check(reply is not None, "StreamingInputCall returned no response")
    assert reply is not None
    expected = sum(STREAM_REQUEST_SIZES)
    _check(
        reply.aggregated_payload_size == expected,
        f"aggregated_payload_size {reply.aggregated_payload_size}, expected {expected}",
    )


async def server_streaming(stub: Stub) -> None:
    request = messages_pb2.StreamingOutputCallRequest(response_type=messages_pb2.COMPRESSABLE)
    for size in STREAM_RESPONSE_SIZES:
        request.response_parameters.add(size=size)
    replies = await stub.StreamingOutputCall(request)
    _check(len(replies) == len(STREAM_RESPONSE_SIZES), f"{len(replies)} responses, expected {len(STREAM_RESPONSE_SIZES)}")
    for i, (reply, size) in enumerate(zip(replies, STREAM_RESPONSE_SIZES)):
        _check_payload(reply.payload, size, f"response {i}")


async def ping_pong(stub: Stub) -> None:
    async with stub.FullDuplexCall.open() as stream:
        await stream.send_request()
        for i, (response_size, payload_size) in enumerate(zip(STREAM_RESPONSE_SIZES, STREAM_REQUEST_SIZES)):
            await stream.send_message(_duplex_request(response_size, payload_size))
            reply = await stream.recv_message()
            _check(reply is not None, f"the stream ended before response {i}")
            assert reply is not None
            _check_payload(reply.payload, response_size, f"response {i}")
        await stream.end()
        extra = await stream.recv_message()
        _check(extra is None, "a response arrived after the last request")
        await stream.recv_trailing_metadata()


async def empty_stream(stub: Stub) -> None:
    async with stub.FullDuplexCall.open() as stream:
        await stream.send_request()
        await stream.end()
        reply = await stream.recv_message()
        _check(reply is None, "FullDuplexCall without requests sent a response")
        await stream.recv_trailing_metadata()


def _check_echoed_metadata(stream: Any, what: str) -> None:
    initial = stream.initial_metadata.getall(INITIAL_METADATA_KEY, [])
    _check(
        initial == [INITIAL_METADATA_VALUE],
        f"{what}: initial metadata {INITIAL_METADATA_KEY}={initial!r}, expected [{INITIAL_METADATA_VALUE!r}]",
    )
    trailing = stream.trailing_metadata.getall(TRAILING_METADATA_KEY, [])
    _check(
        trailing == [TRAILING_METADATA_VALUE],
        f"{what}: trailing metadata {TRAILING_METADATA_KEY}={trailing!r}, expected [{TRAILING_METADATA_VALUE!r}]",
    )


async def custom_metadata(stub: Stub) -> None:
    metadata: list[tuple[str, MetadataValue]] = [
        (INITIAL_METADATA_KEY, INITIAL_METADATA_VALUE),
        (TRAILING_METADATA_KEY, TRAILING_METADATA_VALUE),
    ]
    request = messages_pb2.SimpleRequest(
        response_type=messages_pb2.COMPRESSABLE,
        response_size=LARGE_RESPONSE_SIZE,
        payload=_payload(LARGE_REQUEST_SIZE),
    )
    async with stub.UnaryCall.open(metadata=metadata) as unary:
        await unary.send_message(request, end=True)
        reply = await unary.recv_message()
        await unary.recv_trailing_metadata()
    _check(reply is not None, "UnaryCall returned no response")
    assert reply is not None
    _check_payload(reply.payload, LARGE_RESPONSE_SIZE, "UnaryCall")
    _check_echoed_metadata(unary, "UnaryCall")

    async with stub.FullDuplexCall.open(metadata=metadata) as duplex:
        await duplex.send_message(_duplex_request(LARGE_RESPONSE_SIZE, LARGE_REQUEST_SIZE), end=True)
        replies = [r async for r in duplex]
    _check(len(replies) == 1, f"FullDuplexCall: {len(replies)} responses, expected 1")
    _check_payload(replies[0].payload, LARGE_RESPONSE_SIZE, "FullDuplexCall")
    _check_echoed_metadata(duplex, "FullDuplexCall")


async def _expect_echoed_status(stub: Stub, message: str, *, duplex: bool) -> None:
    echo = messages_pb2.EchoStatus(code=Status.UNKNOWN.value, message=message)
    try:
        await stub.UnaryCall(messages_pb2.SimpleRequest(response_status=echo))
    except GRPCError as exc:
        _check_status(exc, Status.UNKNOWN, message, "UnaryCall")
    else:
        raise InteropFailure("UnaryCall succeeded; expected the echoed status UNKNOWN")
    if not duplex:
        return
    try:
        await stub.FullDuplexCall([messages_pb2.StreamingOutputCallRequest(response_status=echo)])
    except GRPCError as exc:
        _check_status(exc, Status.UNKNOWN, message, "FullDuplexCall")
    else:
        raise InteropFailure("FullDuplexCall succeeded; expected the echoed status UNKNOWN")


async def status_code_and_message(stub: Stub) -> None:
    await _expect_echoed_status(stub, "test status message", duplex=True)


async def special_status_message(stub: Stub) -> None:
    await _expect_echoed_status(stub, SPECIAL_STATUS_MESSAGE, duplex=False)


async def unimplemented_method(stub: Stub) -> None:
    try:
        await stub.UnimplementedCall(empty_pb2.Empty())
    except GRPCError as exc:
        _check_status(exc, Status.UNIMPLEMENTED, None, "UnimplementedCall")
    else:
        raise InteropFailure("TestService/UnimplementedCall succeeded; expected UNIMPLEMENTED")


async def unimplemented_service(stub: Stub) -> None:
    other = test_grpc.UnimplementedServiceStub(_channel(stub))
    try:
        await other.UnimplementedCall(empty_pb2.Empty())
    except GRPCError as exc:
        _check_status(exc, Status.UNIMPLEMENTED, None, "UnimplementedService/UnimplementedCall")
    else:
        raise InteropFailure("UnimplementedService/UnimplementedCall succeeded; expected UNIMPLEMENTED")


async def cancel_after_begin(stub: Stub) -> None:
    async with stub.StreamingInputCall.open() as stream:
        await stream.send_request()
        await stream.cancel()
        try:
            await stream.recv_message()
        except GRPCError as exc:
            _check_status(exc, Status.CANCELLED, None, "StreamingInputCall")
        else:
            raise InteropFailure("the cancelled call returned a response")


async def cancel_after_first_response(stub: Stub) -> None:
    async with stub.FullDuplexCall.open() as stream:
        await stream.send_message(_duplex_request(STREAM_RESPONSE_SIZES[0], STREAM_REQUEST_SIZES[0]))
        reply = await stream.recv_message()
        _check(reply is not None, "FullDuplexCall ended before its first response")
        await stream.cancel()
        try:
            await stream.recv_message()
        except GRPCError as exc:
            _check_status(exc, Status.CANCELLED, None, "FullDuplexCall")
        else:
            raise InteropFailure("the cancelled call went on")


async def timeout_on_sleeping_server(stub: Stub) -> None:
    # The spec's 1 ms deadline may pass before the request leaves; that is
    # DEADLINE_EXCEEDED too, as in grpc's own clients.
    try:
        async with stub.FullDuplexCall.open(timeout=0.001) as stream:
            await stream.send_message(_duplex_request(None, STREAM_REQUEST_SIZES[0]))
            await stream.recv_message()
    except GRPCError as exc:
        _check_status(exc, Status.DEADLINE_EXCEEDED, None, "FullDuplexCall")
    else:
        raise InteropFailure("the call on the sleeping server did not time out")


def _compression_request(expect_compressed: bool) -> messages_pb2.SimpleRequest:
    return messages_pb2.SimpleRequest(
        response_type=messages_pb2.COMPRESSABLE,
        response_size=LARGE_RESPONSE_SIZE,
        payload=_payload(LARGE_REQUEST_SIZE),
        expect_compressed=messages_pb2.BoolValue(value=expect_compressed),
    )


async def _expect_invalid_argument_probe(call: Awaitable[Any], what: str) -> None:
    """The feature probe: an uncompressed request that claims compression must be refused."""
    try:
        await call
    except GRPCError as exc:
        _check_status(exc, Status.INVALID_ARGUMENT, None, f"{what} probe")
    else:
        raise InteropFailure(f"{what} probe: the server accepted an uncompressed request with expect_compressed")


async def client_compressed_unary(stub: Stub) -> None:
    await _expect_invalid_argument_probe(stub.UnaryCall(_compression_request(True)), "UnaryCall")
    reply = await stub.UnaryCall(_compression_request(True), compression="gzip")
    _check_payload(reply.payload, LARGE_RESPONSE_SIZE, "compressed UnaryCall")
    reply = await stub.UnaryCall(_compression_request(False))
    _check_payload(reply.payload, LARGE_RESPONSE_SIZE, "uncompressed UnaryCall")


async def server_compressed_unary(stub: Stub) -> None:
    for compressed in (True, False):
        request = messages_pb2.SimpleRequest(
            response_type=messages_pb2.COMPRESSABLE,
            response_size=LARGE_RESPONSE_SIZE,
            payload=_payload(LARGE_REQUEST_SIZE),
            response_compressed=messages_pb2.BoolValue(value=compressed),
        )
        async with stub.UnaryCall.open() as stream:
            await stream.send_message(request, end=True)
            reply = await stream.recv_message()
            flag = stream.last_message_compressed
            await stream.recv_trailing_metadata()
        _check(reply is not None, "UnaryCall returned no response")
        assert reply is not None
        _check_payload(reply.payload, LARGE_RESPONSE_SIZE, f"UnaryCall (response_compressed={compressed})")
        _check(flag is compressed, f"response_compressed={compressed} but the reply's compressed flag is {flag}")


async def client_compressed_streaming(stub: Stub) -> None:
    probe = messages_pb2.StreamingInputCallRequest(
        expect_compressed=messages_pb2.BoolValue(value=True), payload=_payload(COMPRESSED_STREAM_SIZES[0])
    )
    await _expect_invalid_argument_probe(stub.StreamingInputCall([probe]), "StreamingInputCall")
    async with stub.StreamingInputCall.open(compression="gzip") as stream:
        await stream.send_message(probe)  # compressed, as it claims
        await stream.send_message(
            messages_pb2.StreamingInputCallRequest(
                expect_compressed=messages_pb2.BoolValue(value=False), payload=_payload(COMPRESSED_STREAM_SIZES[1])
            ),
            compress=False,
        )
        await stream.end()
        reply = await stream.recv_message()
        await stream.recv_trailing_metadata()
    _check(reply is not None, "StreamingInputCall returned no response")
    assert reply is not None
    expected = sum(COMPRESSED_STREAM_SIZES)
    _check(
        reply.aggregated_payload_size == expected,
        f"aggregated_payload_size {reply.aggregated_payload_size}, expected {expected}",
    )


async def server_compressed_streaming(stub: Stub) -> None:
    request = messages_pb2.StreamingOutputCallRequest(response_type=messages_pb2.COMPRESSABLE)
    flags = (True, False)
    for size, compressed in zip(SERVER_COMPRESSED_STREAM_SIZES, flags):
        request.response_parameters.add(size=size, compressed=messages_pb2.BoolValue(value=compressed))
    seen: list[tuple[int, bool | None]] = []
    async with stub.StreamingOutputCall.open() as stream:
        await stream.send_message(request, end=True)
        async for reply in stream:
            seen.append((len(reply.payload.body), stream.last_message_compressed))
            _check_payload(reply.payload, len(reply.payload.body), f"response {len(seen) - 1}")
    expected = list(zip(SERVER_COMPRESSED_STREAM_SIZES, flags))
    _check(seen == expected, f"responses (size, compressed flag) {seen}, expected {expected}")


#: Test cases by their interop name, in the order ``all`` runs them.
CASES: dict[str, Case] = {
    "empty_unary": empty_unary,
    "large_unary": large_unary,
    "client_streaming": client_streaming,
    "server_streaming": server_streaming,
    "ping_pong": ping_pong,
    "empty_stream": empty_stream,
    "custom_metadata": custom_metadata,
    "status_code_and_message": status_code_and_message,
    "special_status_message": special_status_message,
    "unimplemented_method": unimplemented_method,
    "unimplemented_service": unimplemented_service,
    "cancel_after_begin": cancel_after_begin,
    "cancel_after_first_response": cancel_after_first_response,
    "timeout_on_sleeping_server": timeout_on_sleeping_server,
    "client_compressed_unary": client_compressed_unary,
    "server_compressed_unary": server_compressed_unary,
    "client_compressed_streaming": client_compressed_streaming,
    "server_compressed_streaming": server_compressed_streaming,
}


async def run_cases(channel: Channel, names: Sequence[str], *, out: Any = None) -> list[tuple[str, str]]:
    """Run the named cases in order on ``channel``; return ``(name, failure)`` for each failed case."""
    out = out if out is not None else sys.stdout
    stub = test_grpc.TestServiceStub(channel)
    failures: list[tuple[str, str]] = []
    for name in names:
        started = time.perf_counter()
        try:
            await CASES[name](stub)
        except Exception as exc:  # any failure of a case is reported, not raised
            failures.append((name, f"{type(exc).__name__}: {exc}"))
            print(f"{name}: FAILED ({exc})", file=out, flush=True)
            continue
        print(f"{name}: passed ({(time.perf_counter() - started) * 1000:.0f} ms)", file=out, flush=True)
    return failures


def _client_ssl(ca_file: str | None) -> _ssl.SSLContext:
    ctx = _ssl.create_default_context(cafile=ca_file)
    ctx.set_alpn_protocols(["h2"])
    return ctx


async def _amain(args: argparse.Namespace, names: list[str]) -> int:
    ssl = _client_ssl(args.ca_file) if args.use_tls else None
    channel = Channel(
        args.server_host,
        args.server_port,
        ssl=ssl,
        server_hostname=args.server_host_override,
        authority=args.server_host_override and f"{args.server_host_override}:{args.server_port}",
    )
    async with channel:
        failures = await run_cases(channel, names)
    for name, message in failures:
        print(f"interop case {name} failed: {message}", file=sys.stderr)
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m grpcasgi.interop.client", description="gRPC interop test client")
    parser.add_argument("--server_host", default="localhost")
    parser.add_argument("--server_port", type=int, required=True)
    parser.add_argument("--server_host_override", default=None, help="TLS server name to verify (SNI) and the :authority to send")
    parser.add_argument(
        "--test_case", default="all", help=f"a case name, a comma-separated list, or 'all': {', '.join(CASES)}"
    )
    parser.add_argument("--use_tls", type=parse_bool, nargs="?", const=True, default=False)
    parser.add_argument("--ca_file", default=None, help="PEM CA bundle to verify the server with (TLS)")
    args = parser.parse_args(argv)
    names = list(CASES) if args.test_case == "all" else [n.strip() for n in args.test_case.split(",") if n.strip()]
    unknown = [n for n in names if n not in CASES]
    if unknown or not names:
        parser.error(f"unknown test case {', '.join(unknown) or '(none)'}; choose from: all, {', '.join(CASES)}")
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    raise SystemExit(asyncio.run(_amain(args, names)))


if __name__ == "__main__":
    main()
