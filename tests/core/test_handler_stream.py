"""Handler ``Stream`` semantics, seen by our client and by a grpcio (grpc.aio) client.

Every test runs twice through the ``client_call`` fixture: once with
``grpcasgi.client.Channel`` and once with ``grpc.aio``; both must see the same
statuses, messages and metadata.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from google.rpc import error_details_pb2

from core_helpers import SS, SU, SV, US, UU, Service
from grpcasgi.exceptions import GRPCError, ProtocolError
from grpcasgi.protocol.status import Status

CARDINALITIES = {"unary_unary": UU, "unary_stream": US, "stream_unary": SU, "stream_stream": SS}


def _requests(cardinality: Any) -> list[SV]:
    return [SV(value="a"), SV(value="b")] if cardinality.client_streaming else [SV(value="a")]


@pytest.mark.parametrize("name", CARDINALITIES)
async def test_recv_until_none_and_reply(start_server: Any, client_call: Any, name: str) -> None:
    """recv_message returns None at the end (and keeps returning None); replies arrive in order."""
    cardinality = CARDINALITIES[name]
    seen: dict[str, Any] = {}

    async def handler(stream: Any) -> None:
        values = []
        while (msg := await stream.recv_message()) is not None:
            values.append(msg.value)
        seen["after_end"] = await stream.recv_message()
        seen["cardinality"] = stream.cardinality
        seen["method"] = stream.method
        for v in values if cardinality.server_streaming else [",".join(values)]:
            await stream.send_message(SV(value=v))

    server = await start_server([Service("core.T", M=(handler, cardinality))])
    out = await client_call(server, "/core.T/M", cardinality, _requests(cardinality))
    assert out.status == 0, out
    expected = ["a", "b"] if cardinality.client_streaming else ["a"]
    if not cardinality.server_streaming:
        expected = [",".join(expected)]
    assert [r.value for r in out.replies] == expected
    assert seen == {"after_end": None, "cardinality": cardinality, "method": "/core.T/M"}


async def test_async_for_bidi_interleaves(start_server: Any, make_channel: Any) -> None:
    """A bidi handler answers each message before the client sends the next one."""

    async def handler(stream: Any) -> None:
        async for msg in stream:
            await stream.send_message(SV(value=msg.value * 2))

    server = await start_server([Service("core.T", M=(handler, SS))])
    channel = make_channel(server.port)
    async with channel.request("/core.T/M", SS, SV, SV) as stream:
        for v in "xyz":
            await stream.send_message(SV(value=v))
            reply = await stream.recv_message()
            assert reply.value == v * 2
        await stream.end()
        assert await stream.recv_message() is None
        await stream.recv_trailing_metadata()


async def test_initial_and_trailing_metadata(start_server: Any, client_call: Any) -> None:
    """Explicit initial metadata and trailing metadata, with -bin values and repeated keys."""

    async def handler(stream: Any) -> None:
        await stream.recv_message()
        await stream.send_initial_metadata(metadata=[("x-init", "1"), ("x-init", "2"), ("x-init-bin", b"\x00\xff")])
        await stream.send_message(SV(value="ok"))
        await stream.send_trailing_metadata(metadata=[("x-trail", "t"), ("x-trail-bin", b"\x01\x02\x03")])

    server = await start_server([Service("core.T", M=(handler, UU))])
    out = await client_call(server, "/core.T/M", UU, [SV(value="a")])
    assert out.status == 0
    initial = [(k, v) for k, v in out.initial if k.startswith("x-")]
    trailing = [(k, v) for k, v in out.trailing if k.startswith("x-")]
    assert initial == [("x-init", "1"), ("x-init", "2"), ("x-init-bin", b"\x00\xff")]
    assert trailing == [("x-trail", "t"), ("x-trail-bin", b"\x01\x02\x03")]


async def test_implicit_initial_metadata_and_trailers(start_server: Any, client_call: Any) -> None:
    """A handler that only sends a message and returns still produces headers and an OK status."""

    async def handler(stream: Any) -> None:
        await stream.recv_message()
        await stream.send_message(SV(value="ok"))

    server = await start_server([Service("core.T", M=(handler, UU))])
    out = await client_call(server, "/core.T/M", UU, [SV(value="a")])
    assert (out.status, [r.value for r in out.replies]) == (0, ["ok"])
    assert not [k for k, _ in out.initial if k.startswith("x-")]


async def test_request_metadata_user_agent_peer_deadline(start_server: Any, client_call: Any) -> None:
    """The handler sees request metadata (incl. -bin, repeated keys), user agent, peer and deadline."""
    seen: dict[str, Any] = {}

    async def handler(stream: Any) -> None:
        await stream.recv_message()
        seen["k"] = stream.metadata.getall("k")
        seen["k-bin"] = stream.metadata.getall("k-bin")
        seen["user_agent"] = stream.user_agent
        seen["peer"] = stream.peer.addr()
        seen["cert"] = stream.peer.cert()
        seen["deadline"] = stream.deadline.time_remaining() if stream.deadline else None
        await stream.send_message(SV(value="ok"))

    server = await start_server([Service("core.T", M=(handler, UU))])
    md = [("k", "v1"), ("k", "v2"), ("k-bin", b"\x00\x01\xfe")]
    out = await client_call(server, "/core.T/M", UU, [SV(value="a")], metadata=md, timeout=30)
    assert out.status == 0, out
    assert seen["k"] == ["v1", "v2"]
    assert seen["k-bin"] == [b"\x00\x01\xfe"]
    expected_agent = "grpc-python-grpcasgi/" if client_call.kind == "ours" else "grpc-python"
    assert seen["user_agent"].startswith(expected_agent)
    assert seen["peer"][0] == "127.0.0.1" and isinstance(seen["peer"][1], int)
    assert seen["cert"] is None
    # grpc core derives grpc-timeout from a cached "now" that lags under load
    # and rounds up (to 100 ms at this size): grpcio may announce a bit more
    # than the 30 s asked for (seen: 30.1 s on a loaded machine).
    assert 25 < seen["deadline"] <= (30 if client_call.kind == "ours" else 31)


async def test_no_deadline_without_timeout(start_server: Any, client_call: Any) -> None:
    seen: list[Any] = []

    async def handler(stream: Any) -> None:
        seen.append(stream.deadline)
        await stream.send_message(SV(value="ok"))

    server = await start_server([Service("core.T", M=(handler, UU))])
    out = await client_call(server, "/core.T/M", UU, [SV(value="a")])
    assert out.status == 0 and seen == [None]


@pytest.mark.parametrize("name", CARDINALITIES)
async def test_grpc_error_is_trailers_only(start_server: Any, client_call: Any, name: str) -> None:
    """GRPCError before any message: the client gets that status and message, no replies."""
    cardinality = CARDINALITIES[name]

    async def handler(stream: Any) -> None:
        # Read the whole request first: grpc.aio reports INTERNAL instead of the
        # status when its request-iterator write races the server's early end
        # (grpc/grpc#36066); test_error_before_reading_the_request covers that case.
        async for _ in stream:
            pass
        raise GRPCError(Status.NOT_FOUND, "no such thing: ünïcode %")

    server = await start_server([Service("core.T", M=(handler, cardinality))])
    out = await client_call(server, "/core.T/M", cardinality, _requests(cardinality))
    assert (out.status, out.message, out.replies) == (Status.NOT_FOUND.value, "no such thing: ünïcode %", [])


@pytest.mark.parametrize("name", ["stream_unary", "stream_stream"])
async def test_error_before_reading_the_request(start_server: Any, make_channel: Any, name: str) -> None:
    """A handler may end a client-streaming call without reading; the client keeps the status
    even while it is still sending (the server resets the rest of the request with NO_ERROR)."""
    cardinality = CARDINALITIES[name]

    async def handler(stream: Any) -> None:
        raise GRPCError(Status.PERMISSION_DENIED, "go away")

    server = await start_server([Service("core.T", M=(handler, cardinality))])
    channel = make_channel(server.port)
    async with channel.request("/core.T/M", cardinality, SV, SV) as stream:
        await stream.send_message(SV(value="first"))
        with pytest.raises(GRPCError) as info:
            await stream.recv_message()
        assert info.value.status is Status.PERMISSION_DENIED
        # Sending more after the server finished is harmless and does not change the outcome.
        await stream.send_message(SV(value="late"))
        with pytest.raises(GRPCError) as info:
            await stream.recv_trailing_metadata()
        assert (info.value.status, info.value.message) == (Status.PERMISSION_DENIED, "go away")


async def test_trailers_only_on_the_wire(server: Any, raw_h2: Any) -> None:
    """An error before any message is a single HEADERS frame carrying grpc-status (Trailers-Only)."""
    from core_helpers import frame, grpc_request_headers

    raw = await raw_h2()
    sid = raw.request(grpc_request_headers("/core.Nope/M"), frame(b""))
    resp = await raw.response(sid)
    assert resp.headers[b":status"] == b"200"
    assert resp.headers[b"grpc-status"] == b"12"
    assert resp.trailers == {} and resp.data == b""


async def test_error_after_messages_keeps_the_messages(start_server: Any, client_call: Any) -> None:
    async def handler(stream: Any) -> None:
        await stream.recv_message()
        await stream.send_message(SV(value="one"))
        await stream.send_message(SV(value="two"))
        raise GRPCError(Status.ABORTED, "stopped")

    server = await start_server([Service("core.T", M=(handler, US))])
    out = await client_call(server, "/core.T/M", US, [SV(value="a")])
    assert (out.status, out.message) == (Status.ABORTED.value, "stopped")
    assert [r.value for r in out.replies] == ["one", "two"]


@pytest.mark.parametrize("after_message", [False, True])
async def test_send_trailing_metadata_with_rich_details(
    start_server: Any, client_call: Any, after_message: bool
) -> None:
    """status, message, details and metadata in trailers; grpcio decodes grpc-status-details-bin."""
    details = [
        error_details_pb2.BadRequest(
            field_violations=[error_details_pb2.BadRequest.FieldViolation(field="name", description="empty")]
        ),
        error_details_pb2.RetryInfo(),
    ]

    async def handler(stream: Any) -> None:
        await stream.recv_message()
        if after_message:
            await stream.send_message(SV(value="partial"))
        await stream.send_trailing_metadata(
            status=Status.INVALID_ARGUMENT,
            status_message="bad name",
            status_details=details,
            metadata={"x-why": "because"},
        )

    server = await start_server([Service("core.T", M=(handler, US))])
    out = await client_call(server, "/core.T/M", US, [SV(value="a")])
    assert (out.status, out.message) == (Status.INVALID_ARGUMENT.value, "bad name")
    assert ("x-why", "because") in out.trailing
    assert len(out.replies) == int(after_message)
    if client_call.kind == "ours":
        assert out.details == details
    else:
        assert out.details.code == Status.INVALID_ARGUMENT.value
        assert out.details.message == "bad name"
        unpacked = error_details_pb2.BadRequest()
        assert out.details.details[0].Unpack(unpacked)
        assert unpacked == details[0]


async def test_grpc_error_details_from_raise(start_server: Any, client_call: Any) -> None:
    info = error_details_pb2.ErrorInfo(reason="QUOTA", domain="example.com")

    async def handler(stream: Any) -> None:
        raise GRPCError(Status.RESOURCE_EXHAUSTED, "quota", [info])

    server = await start_server([Service("core.T", M=(handler, UU))])
    out = await client_call(server, "/core.T/M", UU, [SV(value="a")])
    assert out.status == Status.RESOURCE_EXHAUSTED.value
    if client_call.kind == "ours":
        assert out.details == [info]
    else:
        got = error_details_pb2.ErrorInfo()
        assert out.details.details[0].Unpack(got) and got == info


async def test_unexpected_exception_is_unknown_and_logged(
    start_server: Any, client_call: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def handler(stream: Any) -> None:
        raise ValueError("secret internal detail")

    server = await start_server([Service("core.T", M=(handler, UU))])
    with caplog.at_level(logging.ERROR, logger="grpcasgi"):
        out = await client_call(server, "/core.T/M", UU, [SV(value="a")])
    assert (out.status, out.message) == (Status.UNKNOWN.value, "Internal Server Error")
    assert "secret" not in (out.message or "")
    records = [r for r in caplog.records if r.exc_info and "/core.T/M" in r.getMessage()]
    assert records and records[0].exc_info[0] is ValueError  # type: ignore[index]


@pytest.mark.parametrize("path", ["/core.T/Missing", "/core.Missing/M", "/nonsense"])
async def test_unknown_method_or_service_is_unimplemented(start_server: Any, client_call: Any, path: str) -> None:
    async def handler(stream: Any) -> None:  # pragma: no cover - never called
        raise AssertionError

    server = await start_server([Service("core.T", M=(handler, UU))])
    out = await client_call(server, path, UU, [SV(value="a")])
    assert out.status == Status.UNIMPLEMENTED.value
    assert path in (out.message or "")


@pytest.mark.parametrize("before_message", [True, False])
async def test_stream_cancel_gives_cancelled(start_server: Any, client_call: Any, before_message: bool) -> None:
    async def handler(stream: Any) -> None:
        await stream.recv_message()
        if not before_message:
            await stream.send_message(SV(value="first"))
        await stream.cancel()

    server = await start_server([Service("core.T", M=(handler, US))])
    out = await client_call(server, "/core.T/M", US, [SV(value="a")])
    assert out.status == Status.CANCELLED.value


async def test_several_services_on_one_server(start_server: Any, client_call: Any) -> None:
    def answer(text: str) -> Any:
        async def handler(stream: Any) -> None:
            await stream.recv_message()
            await stream.send_message(SV(value=text))

        return handler

    server = await start_server(
        [Service("core.A", M=(answer("a"), UU)), Service("core.B", M=(answer("b"), UU), N=(answer("bn"), UU))]
    )
    for path, expected in [("/core.A/M", "a"), ("/core.B/M", "b"), ("/core.B/N", "bn")]:
        out = await client_call(server, path, UU, [SV(value="")])
        assert [r.value for r in out.replies] == [expected]


async def test_handler_sending_after_trailers(
    start_server: Any, client_call: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """send_message after send_trailing_metadata raises ProtocolError; the client keeps the original status."""
    raised: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    async def handler(stream: Any) -> None:
        await stream.recv_message()
        await stream.send_trailing_metadata(status=Status.FAILED_PRECONDITION, status_message="first")
        try:
            await stream.send_message(SV(value="late"))
        except ProtocolError as exc:
            raised.set_result(exc)
            raise

    server = await start_server([Service("core.T", M=(handler, UU))])
    with caplog.at_level(logging.ERROR, logger="grpcasgi"):
        out = await client_call(server, "/core.T/M", UU, [SV(value="a")])
        exc = await asyncio.wait_for(raised, 5)
        # The call task finishes after the client got its status; let it log.
        for _ in range(20):
            if any(r.exc_info and r.exc_info[0] is ProtocolError for r in caplog.records):
                break
            await asyncio.sleep(0.01)
    assert isinstance(exc, ProtocolError)
    assert (out.status, out.message) == (Status.FAILED_PRECONDITION.value, "first")
    assert any(r.exc_info and r.exc_info[0] is ProtocolError for r in caplog.records)


async def test_unary_handler_sending_two_replies(start_server: Any, client_call: Any) -> None:
    async def handler(stream: Any) -> None:
        await stream.recv_message()
        await stream.send_message(SV(value="one"))
        await stream.send_message(SV(value="two"))

    server = await start_server([Service("core.T", M=(handler, UU))])
    out = await client_call(server, "/core.T/M", UU, [SV(value="a")])
    # The second send raises ProtocolError in the handler → UNKNOWN after the first message.
    assert out.status == Status.UNKNOWN.value


@pytest.mark.parametrize("explicit", [False, True])
async def test_unary_handler_ending_ok_without_reply(
    start_server: Any, client_call: Any, caplog: pytest.LogCaptureFixture, explicit: bool
) -> None:
    """OK without the one reply is a handler bug: UNKNOWN for the client (never a None reply), logged."""

    async def handler(stream: Any) -> None:
        await stream.recv_message()
        if explicit:
            await stream.send_trailing_metadata()

    server = await start_server([Service("core.T", M=(handler, UU))])
    with caplog.at_level(logging.ERROR, logger="grpcasgi"):
        out = await client_call(server, "/core.T/M", UU, [SV(value="a")])
    assert (out.status, out.message, out.replies) == (Status.UNKNOWN.value, "Internal Server Error", [])
    assert any(r.exc_info and "requires a reply message" in str(r.exc_info[1]) for r in caplog.records)


async def test_server_streaming_handler_may_send_nothing(start_server: Any, client_call: Any) -> None:
    async def handler(stream: Any) -> None:
        await stream.recv_message()

    server = await start_server([Service("core.T", M=(handler, US))])
    out = await client_call(server, "/core.T/M", US, [SV(value="a")])
    assert (out.status, out.replies) == (0, [])


async def test_error_after_initial_metadata(start_server: Any, client_call: Any) -> None:
    """Initial metadata sent, then GRPCError: the client gets both (trailers, not Trailers-Only)."""

    async def handler(stream: Any) -> None:
        await stream.recv_message()
        await stream.send_initial_metadata(metadata={"x-early": "yes"})
        raise GRPCError(Status.UNAUTHENTICATED, "who are you")

    server = await start_server([Service("core.T", M=(handler, UU))])
    out = await client_call(server, "/core.T/M", UU, [SV(value="a")])
    assert (out.status, out.message) == (Status.UNAUTHENTICATED.value, "who are you")
    assert ("x-early", "yes") in out.initial
