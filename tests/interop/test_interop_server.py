"""Interop server features that the standard client cases do not reach.

HalfDuplexCall, ``interval_us``, echo status on every method and with
trailers, CompressedRequest, refused payload types, CacheableUnaryCall — each
driven over loopback with grpcasgi's client.
"""

from __future__ import annotations

import time
from typing import AsyncIterator

import pytest

from grpcasgi.client import Channel
from grpcasgi.exceptions import GRPCError
from grpcasgi.interop.protos.grpc.testing import messages_pb2, test_grpc
from grpcasgi.interop.server import INITIAL_METADATA_KEY, TRAILING_METADATA_KEY, make_services
from grpcasgi.protocol.status import Status
from grpcasgi.server import Server

Req = messages_pb2.StreamingOutputCallRequest


@pytest.fixture
async def stub() -> AsyncIterator[test_grpc.TestServiceStub]:
    server = Server(make_services())
    await server.start("127.0.0.1", 0)
    try:
        async with Channel("127.0.0.1", server.port) as channel:
            yield test_grpc.TestServiceStub(channel)
    finally:
        server.close()
        await server.wait_closed()


def _sizes(replies: list[messages_pb2.StreamingOutputCallResponse]) -> list[int]:
    return [len(r.payload.body) for r in replies]


async def test_half_duplex_answers_after_the_client_half_closes(stub: test_grpc.TestServiceStub) -> None:
    async with stub.HalfDuplexCall.open() as stream:
        await stream.send_message(Req(response_parameters=[messages_pb2.ResponseParameters(size=3)]))
        await stream.send_message(Req(response_parameters=[messages_pb2.ResponseParameters(size=5)] * 2))
        await stream.end()
        replies = [r async for r in stream]
    assert _sizes(replies) == [3, 5, 5]


async def test_interval_us_is_slept_before_each_response(stub: test_grpc.TestServiceStub) -> None:
    params = [messages_pb2.ResponseParameters(size=1, interval_us=20_000)] * 3
    started = time.perf_counter()
    replies = await stub.StreamingOutputCall(Req(response_parameters=params))
    assert _sizes(replies) == [1, 1, 1]
    assert time.perf_counter() - started >= 0.06


@pytest.mark.parametrize("method", ["StreamingOutputCall", "FullDuplexCall", "HalfDuplexCall"])
async def test_echo_status_on_streaming_methods(stub: test_grpc.TestServiceStub, method: str) -> None:
    request = Req(response_status=messages_pb2.EchoStatus(code=Status.NOT_FOUND.value, message="nope"))
    with pytest.raises(GRPCError) as info:
        if method == "StreamingOutputCall":
            await stub.StreamingOutputCall(request)
        else:
            await getattr(stub, method)([request])
    assert (info.value.status, info.value.message) == (Status.NOT_FOUND, "nope")


async def test_duplex_stops_at_the_echo_status_request(stub: test_grpc.TestServiceStub) -> None:
    first = Req(response_parameters=[messages_pb2.ResponseParameters(size=7)])
    failing = Req(response_status=messages_pb2.EchoStatus(code=Status.ABORTED.value, message="stop"))
    async with stub.FullDuplexCall.open() as stream:
        await stream.send_message(first)
        reply = await stream.recv_message()
        assert reply is not None and len(reply.payload.body) == 7
        await stream.send_message(failing)
        await stream.send_message(first)  # "will not process any further messages"
        with pytest.raises(GRPCError) as info:
            await stream.recv_message()
    assert info.value.status is Status.ABORTED


async def test_echo_status_keeps_the_metadata_echo(stub: test_grpc.TestServiceStub) -> None:
    metadata = [(INITIAL_METADATA_KEY, "hello"), (TRAILING_METADATA_KEY, b"\x00\xff")]
    request = messages_pb2.SimpleRequest(response_status=messages_pb2.EchoStatus(code=2, message="boom"))
    async with stub.UnaryCall.open(metadata=metadata) as stream:
        await stream.send_message(request, end=True)
        with pytest.raises(GRPCError) as info:
            await stream.recv_message()
    assert (info.value.status, info.value.message) == (Status.UNKNOWN, "boom")
    assert stream.initial_metadata is not None and stream.initial_metadata.getall(INITIAL_METADATA_KEY) == ["hello"]
    assert stream.trailing_metadata is not None
    assert stream.trailing_metadata.getall(TRAILING_METADATA_KEY) == [b"\x00\xff"]


async def test_echo_status_with_an_undefined_code_is_unknown(stub: test_grpc.TestServiceStub) -> None:
    request = messages_pb2.SimpleRequest(response_status=messages_pb2.EchoStatus(code=99, message="odd"))
    with pytest.raises(GRPCError) as info:
        await stub.UnaryCall(request)
    assert (info.value.status, info.value.message) == (Status.UNKNOWN, "odd")


async def test_expect_compressed_refuses_an_uncompressed_request(stub: test_grpc.TestServiceStub) -> None:
    request = messages_pb2.SimpleRequest(
        response_size=10, expect_compressed=messages_pb2.BoolValue(value=True), payload=messages_pb2.Payload(body=bytes(100))
    )
    with pytest.raises(GRPCError) as info:
        await stub.UnaryCall(request)
    assert info.value.status is Status.INVALID_ARGUMENT
    reply = await stub.UnaryCall(request, compression="gzip")
    assert len(reply.payload.body) == 10


async def test_expect_compressed_on_client_streaming(stub: test_grpc.TestServiceStub) -> None:
    request = messages_pb2.StreamingInputCallRequest(
        expect_compressed=messages_pb2.BoolValue(value=True), payload=messages_pb2.Payload(body=bytes(27182))
    )
    with pytest.raises(GRPCError) as info:
        await stub.StreamingInputCall([request])
    assert info.value.status is Status.INVALID_ARGUMENT
    reply = await stub.StreamingInputCall([request], compression="gzip")
    assert reply.aggregated_payload_size == 27182


async def test_unsupported_payload_type_and_negative_size_are_invalid(stub: test_grpc.TestServiceStub) -> None:
    with pytest.raises(GRPCError) as info:
        await stub.UnaryCall(messages_pb2.SimpleRequest(response_type=7, response_size=1))  # type: ignore[arg-type]
    assert info.value.status is Status.INVALID_ARGUMENT
    with pytest.raises(GRPCError) as info:
        await stub.StreamingOutputCall(Req(response_parameters=[messages_pb2.ResponseParameters(size=-1)]))
    assert info.value.status is Status.INVALID_ARGUMENT


async def test_fill_server_id(stub: test_grpc.TestServiceStub) -> None:
    first = await stub.UnaryCall(messages_pb2.SimpleRequest(fill_server_id=True))
    second = await stub.UnaryCall(messages_pb2.SimpleRequest(fill_server_id=True))
    assert first.server_id and first.server_id == second.server_id and first.hostname


async def test_cacheable_unary_call(stub: test_grpc.TestServiceStub) -> None:
    async with stub.CacheableUnaryCall.open() as stream:
        await stream.send_message(messages_pb2.SimpleRequest(), end=True)
        first = await stream.recv_message()
    second = await stub.CacheableUnaryCall(messages_pb2.SimpleRequest())
    assert stream.initial_metadata is not None
    assert stream.initial_metadata.get("cache-control") == "max-age=60, public"
    assert first is not None and first.payload.body != second.payload.body


async def test_deadline_cuts_the_interval_sleep(stub: test_grpc.TestServiceStub) -> None:
    params = [messages_pb2.ResponseParameters(size=1, interval_us=30_000_000)]
    started = time.perf_counter()
    with pytest.raises(GRPCError) as info:
        await stub.StreamingOutputCall(Req(response_parameters=params), timeout=0.2)
    assert info.value.status is Status.DEADLINE_EXCEEDED
    assert time.perf_counter() - started < 10


async def test_expect_compressed_judges_the_message_flag_not_the_header(stub: test_grpc.TestServiceStub) -> None:
    request = messages_pb2.SimpleRequest(response_size=1, expect_compressed=messages_pb2.BoolValue(value=True))
    async with stub.UnaryCall.open(compression="gzip") as stream:  # grpc-encoding: gzip ...
        await stream.send_message(request, end=True, compress=False)  # ... but this message is not compressed
        with pytest.raises(GRPCError) as info:
            await stream.recv_message()
    assert info.value.status is Status.INVALID_ARGUMENT


async def test_reply_compression_follows_the_request_encoding_by_default(stub: test_grpc.TestServiceStub) -> None:
    for compression, expected in ((None, False), ("deflate", True)):
        async with stub.UnaryCall.open(compression=compression) as stream:
            await stream.send_message(messages_pb2.SimpleRequest(response_size=100), end=True)
            reply = await stream.recv_message()
            assert reply is not None and len(reply.payload.body) == 100
            assert stream.last_message_compressed is expected
