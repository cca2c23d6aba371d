"""A grpcio (``grpc.aio``) implementation of the interop ``TestService``.

It follows the spec's server features the way grpc's reference servers do
(echo status, echo metadata, ``interval_us``), so that grpcasgi's client is
checked against a server it shares no code with. ``UnimplementedCall`` keeps
the generated servicer's UNIMPLEMENTED behaviour and ``UnimplementedService``
is not registered. CompressedResponse is implemented (``set_compression`` and
``disable_next_message_compression``); CompressedRequest cannot be: grpcio's
servicer API does not say whether a request message arrived compressed.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

import grpc
from grpc import aio

from grpcasgi.interop.protos.grpc.testing import empty_pb2, messages_pb2
from interop_support import grpcio_test_pb2_grpc

INITIAL_METADATA_KEY = "x-grpc-test-echo-initial"
TRAILING_METADATA_KEY = "x-grpc-test-echo-trailing-bin"

_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _payload(size: int) -> messages_pb2.Payload:
    return messages_pb2.Payload(type=messages_pb2.COMPRESSABLE, body=b"\x00" * size)


class _Echo:
    """Echo-metadata state of one call: initial now, trailing with whatever status ends it."""

    def __init__(self, context: aio.ServicerContext[Any, Any]) -> None:
        self.context = context
        metadata = context.invocation_metadata() or ()
        self.initial = tuple((k, v) for k, v in metadata if k == INITIAL_METADATA_KEY)
        self.trailing = tuple((k, v) for k, v in metadata if k == TRAILING_METADATA_KEY)

    async def start(self, *, force: bool = False) -> None:
        if self.initial or force:
            await self.context.send_initial_metadata(self.initial)
        if self.trailing:
            self.context.set_trailing_metadata(self.trailing)

    async def maybe_abort(self, request: Any) -> None:
        if request.HasField("response_status") and request.response_status.code != 0:
            code = _CODES.get(request.response_status.code, grpc.StatusCode.UNKNOWN)
            await self.context.abort(code, request.response_status.message, self.trailing)


def _make_servicer_class() -> type:
    base = grpcio_test_pb2_grpc().TestServiceServicer

    class GrpcioTestService(base):  # type: ignore[misc, valid-type]
        async def EmptyCall(self, request: Any, context: Any) -> Any:
            return empty_pb2.Empty()

        async def UnaryCall(self, request: Any, context: Any) -> Any:
            echo = _Echo(context)
            compress = request.HasField("response_compressed") and request.response_compressed.value
            if compress:
                context.set_compression(grpc.Compression.Gzip)
            elif request.HasField("response_compressed"):
                context.disable_next_message_compression()
            # grpc.aio applies set_compression to a unary reply only through
            # explicitly sent initial metadata (its implicit headers omit grpc-encoding).
            await echo.start(force=compress)
            await echo.maybe_abort(request)
            return messages_pb2.SimpleResponse(payload=_payload(request.response_size))

        async def StreamingOutputCall(self, request: Any, context: Any) -> AsyncIterator[Any]:
            echo = _Echo(context)
            if any(p.HasField("compressed") and p.compressed.value for p in request.response_parameters):
                context.set_compression(grpc.Compression.Gzip)
            await echo.start()
            await echo.maybe_abort(request)
            for params in request.response_parameters:
                if params.interval_us:
                    await asyncio.sleep(params.interval_us / 1e6)
                if params.HasField("compressed") and not params.compressed.value:
                    context.disable_next_message_compression()
                yield messages_pb2.StreamingOutputCallResponse(payload=_payload(params.size))

        async def StreamingInputCall(self, request_iterator: Any, context: Any) -> Any:
            total = 0
            async for request in request_iterator:
                total += len(request.payload.body)
            return messages_pb2.StreamingInputCallResponse(aggregated_payload_size=total)

        async def FullDuplexCall(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
            echo = _Echo(context)
            await echo.start()
            async for request in request_iterator:
                await echo.maybe_abort(request)
                for params in request.response_parameters:
                    if params.interval_us:
                        await asyncio.sleep(params.interval_us / 1e6)
                    yield messages_pb2.StreamingOutputCallResponse(payload=_payload(params.size))

        async def HalfDuplexCall(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
            echo = _Echo(context)
            await echo.start()
            requests = [request async for request in request_iterator]
            for request in requests:
                await echo.maybe_abort(request)
                for params in request.response_parameters:
                    yield messages_pb2.StreamingOutputCallResponse(payload=_payload(params.size))

    return GrpcioTestService


async def start_grpcio_server(credentials: grpc.ServerCredentials | None = None) -> tuple[aio.Server, int]:
    """A started ``grpc.aio`` interop server on 127.0.0.1 and its port."""
    server = aio.server()
    grpcio_test_pb2_grpc().add_TestServiceServicer_to_server(_make_servicer_class()(), server)
    address = "127.0.0.1:0"
    port = server.add_secure_port(address, credentials) if credentials is not None else server.add_insecure_port(address)
    await server.start()
    return server, port
