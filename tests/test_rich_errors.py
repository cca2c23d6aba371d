"""Rich error details (grpcasgi.rich_errors) over loopback: ours both ways and with grpcio peers."""

from __future__ import annotations

from typing import Any, AsyncIterator, Callable

import grpc
import pytest
from google.protobuf.any_pb2 import Any as AnyProto
from google.protobuf.wrappers_pb2 import StringValue
from google.rpc import status_pb2
from grpc_status import rpc_status

from grpcasgi import Cardinality, GRPCError, Handler, Middleware, Status
from grpcasgi.client import Channel, UnaryStreamMethod, UnaryUnaryMethod
from grpcasgi.rich_errors import (
    BadRequest,
    DebugInfo,
    ErrorInfo,
    Help,
    LocalizedMessage,
    PreconditionFailure,
    QuotaFailure,
    RequestInfo,
    ResourceInfo,
    RetryInfo,
    bad_request,
    debug_info,
    detail_of,
    details_of,
    error_info,
    help_links,
    localized_message,
    precondition_failure,
    quota_failure,
    request_info,
    resource_info,
    retry_delay,
    retry_info,
    rich_error,
)
from grpcasgi.server import Server, Stream
from grpcasgi.testing import ChannelFor
from grpcasgi.types import Receive, Scope, Send

#: Every helper with typical arguments, its default status, and the detail type it carries.
CASES: dict[str, tuple[Callable[[], GRPCError], Status, type]] = {
    "bad_request": (lambda: bad_request({"name": "must not be empty", "age": "must be positive"}), Status.INVALID_ARGUMENT, BadRequest),
    "precondition_failure": (
        lambda: precondition_failure([("TOS", "user:42", "terms not accepted")]),
        Status.FAILED_PRECONDITION,
        PreconditionFailure,
    ),
    "quota_failure": (lambda: quota_failure({"project:42": "daily limit reached"}), Status.RESOURCE_EXHAUSTED, QuotaFailure),
    "retry_info": (lambda: retry_info(1.5), Status.UNAVAILABLE, RetryInfo),
    "resource_info": (lambda: resource_info("book", "shelves/1/books/2", owner="ann"), Status.NOT_FOUND, ResourceInfo),
    "error_info": (
        lambda: error_info("API_DISABLED", "example.com", {"service": "books"}, status=Status.PERMISSION_DENIED),
        Status.PERMISSION_DENIED,
        ErrorInfo,
    ),
    "debug_info": (lambda: debug_info(["a.py:1", "b.py:2"], "boom"), Status.INTERNAL, DebugInfo),
    "help_links": (
        lambda: help_links({"docs": "https://example.com/docs"}, "see the docs", status=Status.FAILED_PRECONDITION),
        Status.FAILED_PRECONDITION,
        Help,
    ),
    "localized_message": (
        lambda: localized_message("fr-CH", "Livre introuvable", status=Status.NOT_FOUND),
        Status.NOT_FOUND,
        LocalizedMessage,
    ),
    "request_info": (lambda: request_info("req-7", "shard=3", "oops", status=Status.ABORTED), Status.ABORTED, RequestInfo),
}


class Svc:
    """``/r.Svc/Fail`` raises the error named by the request; ``Stream`` fails after one reply."""

    async def Fail(self, stream: Stream[StringValue, StringValue]) -> None:
        request = await stream.recv_message()
        assert request is not None
        if request.value == "combined":
            raise quota_failure(
                {"project:42": "daily limit reached"},
                details=[retry_info(30), help_links({"quotas": "https://example.com/quotas"})],
            )
        raise CASES[request.value][0]()

    async def Stream(self, stream: Stream[StringValue, StringValue]) -> None:
        await stream.recv_message()
        await stream.send_message(StringValue(value="first"))
        raise bad_request({"page_token": "expired"})

    def __mapping__(self) -> dict[str, Handler]:
        return {
            "/r.Svc/Fail": Handler(self.Fail, Cardinality.UNARY_UNARY, StringValue, StringValue),
            "/r.Svc/Stream": Handler(self.Stream, Cardinality.UNARY_STREAM, StringValue, StringValue),
        }


def fail(channel: Channel) -> UnaryUnaryMethod[StringValue, StringValue]:
    return UnaryUnaryMethod(channel, "/r.Svc/Fail", StringValue, StringValue)


@pytest.fixture
async def server(grpc_server: Any) -> Server:
    server: Server = await grpc_server([Svc()])
    return server


@pytest.mark.parametrize("name", list(CASES))
async def test_each_helper_round_trips(server: Server, grpc_channel: Any, name: str) -> None:
    make, status, detail_type = CASES[name]
    sent = make()
    with pytest.raises(GRPCError) as info:
        await fail(grpc_channel(server))(StringValue(value=name), timeout=10)
    err = info.value
    assert err.status is status is sent.status
    assert err.message == sent.message
    assert err.details == sent.details
    (detail,) = details_of(err, detail_type)
    assert detail == sent.details[0]
    assert detail_of(err, detail_type) == detail
    assert details_of(err, BadRequest if detail_type is not BadRequest else RetryInfo) == []


async def test_bad_request_as_the_client_sees_it(server: Server, grpc_channel: Any) -> None:
    with pytest.raises(GRPCError) as info:
        await fail(grpc_channel(server))(StringValue(value="bad_request"), timeout=10)
    err = info.value
    assert err.status is Status.INVALID_ARGUMENT
    assert err.message == "invalid request: name: must not be empty; age: must be positive"
    request = detail_of(err, BadRequest)
    assert request is not None
    assert {v.field: v.description for v in request.field_violations} == {
        "name": "must not be empty",
        "age": "must be positive",
    }


async def test_combined_details_and_retry_delay(server: Server, grpc_channel: Any) -> None:
    with pytest.raises(GRPCError) as info:
        await fail(grpc_channel(server))(StringValue(value="combined"), timeout=10)
    err = info.value
    assert err.status is Status.RESOURCE_EXHAUSTED
    assert [type(d) for d in err.details] == [QuotaFailure, RetryInfo, Help]
    assert retry_delay(err) == 30.0
    (links,) = details_of(err, Help)
    assert links.links[0].url == "https://example.com/quotas"


async def test_details_after_messages_travel_in_trailers(server: Server, grpc_channel: Any) -> None:
    method = UnaryStreamMethod(grpc_channel(server), "/r.Svc/Stream", StringValue, StringValue)
    replies = []
    with pytest.raises(GRPCError) as info:
        async with method.open(timeout=10) as stream:
            await stream.send_message(StringValue(), end=True)
            async for reply in stream:
                replies.append(reply.value)
    assert replies == ["first"]
    request = detail_of(info.value, BadRequest)
    assert request is not None and request.field_violations[0].field == "page_token"


class RejectAnonymous:
    """Middleware raising a rich error before the handler runs."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if "x-user" not in scope["metadata"]:
            raise error_info("ANONYMOUS", "auth.example.com", {"path": scope["path"]}, "sign in first", status=Status.UNAUTHENTICATED)
        await self.app(scope, receive, send)


async def test_middleware_raises_rich_errors() -> None:
    async with ChannelFor([Svc()], middleware=[Middleware(RejectAnonymous)]) as channel:
        with pytest.raises(GRPCError) as info:
            await fail(channel)(StringValue(value="bad_request"))
    assert info.value.status is Status.UNAUTHENTICATED
    detail = detail_of(info.value, ErrorInfo)
    assert detail is not None
    assert (detail.reason, detail.domain, dict(detail.metadata)) == ("ANONYMOUS", "auth.example.com", {"path": "/r.Svc/Fail"})


# -- unit behaviour ---------------------------------------------------------------------


def test_rich_error_refuses_ok_and_non_messages() -> None:
    with pytest.raises(ValueError):
        rich_error(Status.OK, "fine", RetryInfo())
    with pytest.raises(TypeError):
        rich_error(Status.INTERNAL, "x", "not a message")  # type: ignore[arg-type]


def test_retry_info_validates_the_delay() -> None:
    with pytest.raises(ValueError):
        retry_info(-1)
    with pytest.raises(ValueError):
        retry_info(float("inf"))
    assert retry_delay(retry_info(0.25)) == 0.25
    assert retry_delay(GRPCError(Status.UNAVAILABLE)) is None


def test_details_of_unpacks_any() -> None:
    packed = AnyProto()
    packed.Pack(BadRequest(field_violations=[BadRequest.FieldViolation(field="f", description="d")]))
    err = GRPCError(Status.INVALID_ARGUMENT, "x", [packed])
    (request,) = details_of(err, BadRequest)
    assert request.field_violations[0].field == "f"
    assert details_of(err, RetryInfo) == []


def test_field_violation_messages_are_accepted() -> None:
    violation = BadRequest.FieldViolation(field="f", description="d", reason="TOO_LONG")
    err = bad_request([violation], "custom")
    assert err.message == "custom"
    assert detail_of(err, BadRequest) == BadRequest(field_violations=[violation])


# -- grpcio peers ---------------------------------------------------------------------------


async def test_grpcio_client_reads_our_details(server: Server) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        method = channel.unary_unary(
            "/r.Svc/Fail", request_serializer=StringValue.SerializeToString, response_deserializer=StringValue.FromString
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await method(StringValue(value="combined"), timeout=10)
    exc = info.value
    assert exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(exc)  # also checks code and message agree with the status proto
    assert status is not None
    assert status.code == Status.RESOURCE_EXHAUSTED.value
    unpacked = []
    for any_detail in status.details:
        for cls in (QuotaFailure, RetryInfo, Help):
            if any_detail.Is(cls.DESCRIPTOR):
                message = cls()
                any_detail.Unpack(message)
                unpacked.append(message)
    assert [type(m) for m in unpacked] == [QuotaFailure, RetryInfo, Help]
    assert unpacked[1].retry_delay.seconds == 30


@pytest.fixture
async def grpcio_server() -> AsyncIterator[int]:
    """A grpc.aio server whose handler aborts with a rich status (grpcio-status's way)."""

    async def fail(request: StringValue, context: grpc.aio.ServicerContext) -> StringValue:
        detail = AnyProto()
        detail.Pack(BadRequest(field_violations=[BadRequest.FieldViolation(field="title", description="too long")]))
        retry = AnyProto()
        retry.Pack(RetryInfo(retry_delay={"seconds": 2}))
        status = status_pb2.Status(code=Status.INVALID_ARGUMENT.value, message="bad title", details=[detail, retry])
        await context.abort_with_status(rpc_status.to_status(status))
        raise AssertionError("unreachable")

    handler = grpc.method_handlers_generic_handler(
        "r.Svc",
        {
            "Fail": grpc.unary_unary_rpc_method_handler(
                fail, request_deserializer=StringValue.FromString, response_serializer=StringValue.SerializeToString
            )
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(None)


async def test_our_client_reads_grpcio_details(grpcio_server: int, grpc_channel: Any) -> None:
    with pytest.raises(GRPCError) as info:
        await fail(grpc_channel("127.0.0.1", grpcio_server))(StringValue(value="x"), timeout=10)
    err = info.value
    assert (err.status, err.message) == (Status.INVALID_ARGUMENT, "bad title")
    request = detail_of(err, BadRequest)
    assert request is not None and request.field_violations[0].field == "title"
    assert retry_delay(err) == 2.0


def test_example_runs() -> None:
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, str(root / "examples" / "rich_errors" / "main.py")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "rejected: title must not be empty" in out
    assert "rejected: title at most 40 characters, got 50" in out
    assert "RESOURCE_EXHAUSTED (RATE_LIMITED); retrying in 0.2s\n  -> shelves/1/books/3" in out
    assert "get: NOT_FOUND: book shelves/9/books/9 (no such book)" in out
