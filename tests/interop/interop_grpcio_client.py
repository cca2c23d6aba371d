"""The interop client cases written against grpcio (``grpc.aio``).

Same names, requests and assertions as ``grpcasgi.interop.client.CASES``;
each is ``async def case(channel: grpc.aio.Channel) -> None`` and raises
``AssertionError`` with what differed. Running them against grpcasgi's server
checks it with a client that shares no code with it.

grpc.aio cannot see a reply's compressed flag, so ``server_compressed_*``
check only that the compressed replies arrive intact; it cannot send one
message of a compressed call uncompressed, so ``client_compressed_streaming``
is in :data:`GRPCIO_CLIENT_UNSUPPORTED` instead.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import grpc
from grpc import aio

from grpcasgi.interop.client import (
    INITIAL_METADATA_VALUE,
    LARGE_REQUEST_SIZE,
    LARGE_RESPONSE_SIZE,
    SERVER_COMPRESSED_STREAM_SIZES,
    SPECIAL_STATUS_MESSAGE,
    STREAM_REQUEST_SIZES,
    STREAM_RESPONSE_SIZES,
    TRAILING_METADATA_VALUE,
)
from grpcasgi.interop.protos.grpc.testing import empty_pb2, messages_pb2
from interop_support import grpcio_test_pb2_grpc

INITIAL_METADATA_KEY = "x-grpc-test-echo-initial"
TRAILING_METADATA_KEY = "x-grpc-test-echo-trailing-bin"

GrpcioCase = Callable[[aio.Channel], Awaitable[None]]


def _stub(channel: aio.Channel) -> Any:
    return grpcio_test_pb2_grpc().TestServiceStub(channel)


def _payload(size: int) -> messages_pb2.Payload:
    return messages_pb2.Payload(type=messages_pb2.COMPRESSABLE, body=b"\x00" * size)


def _check_payload(payload: messages_pb2.Payload, size: int, what: str) -> None:
    assert payload.type == messages_pb2.COMPRESSABLE, f"{what}: payload type {payload.type}"
    assert len(payload.body) == size, f"{what}: payload of {len(payload.body)} bytes, expected {size}"
    assert payload.body == b"\x00" * size, f"{what}: payload body is not all zeros"


def _duplex_request(response_size: int | None, payload_size: int | None) -> messages_pb2.StreamingOutputCallRequest:
    request = messages_pb2.StreamingOutputCallRequest(response_type=messages_pb2.COMPRESSABLE)
    if response_size is not None:
        request.response_parameters.add(size=response_size)
    if payload_size is not None:
        request.payload.CopyFrom(_payload(payload_size))
    return request


async def _expect_code(call: Any, code: grpc.StatusCode, details: str | None, what: str) -> None:
    got = await call.code()
    assert got == code, f"{what}: status {got}, expected {code} ({await call.details()!r})"
    if details is not None:
        got_details = await call.details()
        assert got_details == details, f"{what}: status message {got_details!r}, expected {details!r}"


async def empty_unary(channel: aio.Channel) -> None:
    reply = await _stub(channel).EmptyCall(empty_pb2.Empty())
    assert isinstance(reply, empty_pb2.Empty)


async def large_unary(channel: aio.Channel) -> None:
    request = messages_pb2.SimpleRequest(
        response_type=messages_pb2.COMPRESSABLE, response_size=LARGE_RESPONSE_SIZE, payload=_payload(LARGE_REQUEST_SIZE)
    )
    reply = await _stub(channel).UnaryCall(request)
    _check_payload(reply.payload, LARGE_RESPONSE_SIZE, "UnaryCall")


async def client_streaming(channel: aio.Channel) -> None:
    requests = [messages_pb2.StreamingInputCallRequest(payload=_payload(size)) for size in STREAM_REQUEST_SIZES]
    reply = await _stub(channel).StreamingInputCall(iter(requests))
    assert reply.aggregated_payload_size == sum(STREAM_REQUEST_SIZES), reply.aggregated_payload_size


async def server_streaming(channel: aio.Channel) -> None:
    request = messages_pb2.StreamingOutputCallRequest(response_type=messages_pb2.COMPRESSABLE)
    for size in STREAM_RESPONSE_SIZES:
        request.response_parameters.add(size=size)
    call = _stub(channel).StreamingOutputCall(request)
    replies = [reply async for reply in call]
    assert len(replies) == len(STREAM_RESPONSE_SIZES), f"{len(replies)} responses"
    for i, (reply, size) in enumerate(zip(replies, STREAM_RESPONSE_SIZES)):
        _check_payload(reply.payload, size, f"response {i}")
    await _expect_code(call, grpc.StatusCode.OK, None, "StreamingOutputCall")


async def ping_pong(channel: aio.Channel) -> None:
    call = _stub(channel).FullDuplexCall()
    for i, (response_size, payload_size) in enumerate(zip(STREAM_RESPONSE_SIZES, STREAM_REQUEST_SIZES)):
        await call.write(_duplex_request(response_size, payload_size))
        reply = await call.read()
        assert reply is not aio.EOF, f"the stream ended before response {i}"
        _check_payload(reply.payload, response_size, f"response {i}")
    await call.done_writing()
    assert await call.read() is aio.EOF, "a response arrived after the last request"
    await _expect_code(call, grpc.StatusCode.OK, None, "FullDuplexCall")


async def empty_stream(channel: aio.Channel) -> None:
    call = _stub(channel).FullDuplexCall()
    await call.done_writing()
    assert await call.read() is aio.EOF, "FullDuplexCall without requests sent a response"
    await _expect_code(call, grpc.StatusCode.OK, None, "FullDuplexCall")


async def _check_echoed_metadata(call: Any, what: str) -> None:
    initial = [v for k, v in (await call.initial_metadata() or ()) if k == INITIAL_METADATA_KEY]
    assert initial == [INITIAL_METADATA_VALUE], f"{what}: initial metadata {initial!r}"
    trailing = [v for k, v in (await call.trailing_metadata() or ()) if k == TRAILING_METADATA_KEY]
    assert trailing == [TRAILING_METADATA_VALUE], f"{what}: trailing metadata {trailing!r}"


async def custom_metadata(channel: aio.Channel) -> None:
    stub = _stub(channel)
    metadata = ((INITIAL_METADATA_KEY, INITIAL_METADATA_VALUE), (TRAILING_METADATA_KEY, TRAILING_METADATA_VALUE))
    request = messages_pb2.SimpleRequest(
        response_type=messages_pb2.COMPRESSABLE, response_size=LARGE_RESPONSE_SIZE, payload=_payload(LARGE_REQUEST_SIZE)
    )
    unary = stub.UnaryCall(request, metadata=metadata)
    reply = await unary
    _check_payload(reply.payload, LARGE_RESPONSE_SIZE, "UnaryCall")
    await _check_echoed_metadata(unary, "UnaryCall")

    duplex = stub.FullDuplexCall(metadata=metadata)
    await duplex.write(_duplex_request(LARGE_RESPONSE_SIZE, LARGE_REQUEST_SIZE))
    await duplex.done_writing()
    replies = [r async for r in duplex]
    assert len(replies) == 1, f"FullDuplexCall: {len(replies)} responses"
    _check_payload(replies[0].payload, LARGE_RESPONSE_SIZE, "FullDuplexCall")
    await _check_echoed_metadata(duplex, "FullDuplexCall")


async def _echoed_status(channel: aio.Channel, message: str, *, duplex: bool) -> None:
    stub = _stub(channel)
    echo = messages_pb2.EchoStatus(code=grpc.StatusCode.UNKNOWN.value[0], message=message)
    unary = stub.UnaryCall(messages_pb2.SimpleRequest(response_status=echo))
    await _expect_code(unary, grpc.StatusCode.UNKNOWN, message, "UnaryCall")
    if duplex:
        call = stub.FullDuplexCall()
        await call.write(messages_pb2.StreamingOutputCallRequest(response_status=echo))
        await call.done_writing()
        await _expect_code(call, grpc.StatusCode.UNKNOWN, message, "FullDuplexCall")


async def status_code_and_message(channel: aio.Channel) -> None:
    await _echoed_status(channel, "test status message", duplex=True)


async def special_status_message(channel: aio.Channel) -> None:
    await _echoed_status(channel, SPECIAL_STATUS_MESSAGE, duplex=False)


async def unimplemented_method(channel: aio.Channel) -> None:
    call = _stub(channel).UnimplementedCall(empty_pb2.Empty())
    await _expect_code(call, grpc.StatusCode.UNIMPLEMENTED, None, "UnimplementedCall")


async def unimplemented_service(channel: aio.Channel) -> None:
    call = grpcio_test_pb2_grpc().UnimplementedServiceStub(channel).UnimplementedCall(empty_pb2.Empty())
    await _expect_code(call, grpc.StatusCode.UNIMPLEMENTED, None, "UnimplementedService/UnimplementedCall")


async def cancel_after_begin(channel: aio.Channel) -> None:
    call = _stub(channel).StreamingInputCall()
    call.cancel()
    await _expect_code(call, grpc.StatusCode.CANCELLED, None, "StreamingInputCall")


async def cancel_after_first_response(channel: aio.Channel) -> None:
    call = _stub(channel).FullDuplexCall()
    await call.write(_duplex_request(STREAM_RESPONSE_SIZES[0], STREAM_REQUEST_SIZES[0]))
    reply = await call.read()
    assert reply is not aio.EOF, "FullDuplexCall ended before its first response"
    call.cancel()
    await _expect_code(call, grpc.StatusCode.CANCELLED, None, "FullDuplexCall")


async def timeout_on_sleeping_server(channel: aio.Channel) -> None:
    # As grpc's own Python client does: a deadline long enough for the write
    # to go out, on a server told to sleep past it. With the spec's 1 ms,
    # grpc.aio turns a write that loses the race with the deadline into
    # INTERNAL "Internal error from Core" (seen against grpcio's server too).
    timeout = 0.25
    call = _stub(channel).FullDuplexCall(timeout=timeout)
    request = _duplex_request(None, STREAM_REQUEST_SIZES[0])
    request.response_parameters.add(size=1, interval_us=int(timeout * 2 * 1e6))
    await call.write(request)
    await _expect_code(call, grpc.StatusCode.DEADLINE_EXCEEDED, None, "FullDuplexCall")


def _large_request(**fields: Any) -> messages_pb2.SimpleRequest:
    return messages_pb2.SimpleRequest(
        response_type=messages_pb2.COMPRESSABLE,
        response_size=LARGE_RESPONSE_SIZE,
        payload=_payload(LARGE_REQUEST_SIZE),
        **fields,
    )


async def client_compressed_unary(channel: aio.Channel) -> None:
    stub = _stub(channel)
    expect = messages_pb2.BoolValue(value=True)
    probe = stub.UnaryCall(_large_request(expect_compressed=expect))
    await _expect_code(probe, grpc.StatusCode.INVALID_ARGUMENT, None, "UnaryCall probe")
    reply = await stub.UnaryCall(_large_request(expect_compressed=expect), compression=grpc.Compression.Gzip)
    _check_payload(reply.payload, LARGE_RESPONSE_SIZE, "compressed UnaryCall")
    reply = await stub.UnaryCall(_large_request(expect_compressed=messages_pb2.BoolValue(value=False)))
    _check_payload(reply.payload, LARGE_RESPONSE_SIZE, "uncompressed UnaryCall")


async def server_compressed_unary(channel: aio.Channel) -> None:
    for compressed in (True, False):
        request = _large_request(response_compressed=messages_pb2.BoolValue(value=compressed))
        reply = await _stub(channel).UnaryCall(request)
        _check_payload(reply.payload, LARGE_RESPONSE_SIZE, f"UnaryCall (response_compressed={compressed})")


async def server_compressed_streaming(channel: aio.Channel) -> None:
    request = messages_pb2.StreamingOutputCallRequest(response_type=messages_pb2.COMPRESSABLE)
    for size, compressed in zip(SERVER_COMPRESSED_STREAM_SIZES, (True, False)):
        request.response_parameters.add(size=size, compressed=messages_pb2.BoolValue(value=compressed))
    replies = [reply async for reply in _stub(channel).StreamingOutputCall(request)]
    assert [len(r.payload.body) for r in replies] == list(SERVER_COMPRESSED_STREAM_SIZES), replies
    for i, (reply, size) in enumerate(zip(replies, SERVER_COMPRESSED_STREAM_SIZES)):
        _check_payload(reply.payload, size, f"response {i}")


#: Cases grpc.aio cannot express, with the reason.
GRPCIO_CLIENT_UNSUPPORTED = {
    "client_compressed_streaming": "grpc.aio cannot send one message of a compressed call uncompressed",
}
#: Cases the grpcio test server cannot serve, with the reason.
GRPCIO_SERVER_UNSUPPORTED = {
    "client_compressed_unary": "grpcio's servicer API does not tell whether a request arrived compressed",
    "client_compressed_streaming": "grpcio's servicer API does not tell whether a request arrived compressed",
}

GRPCIO_CASES: dict[str, GrpcioCase] = {
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
    "server_compressed_streaming": server_compressed_streaming,
}
