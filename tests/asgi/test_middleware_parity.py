"""The same middleware list behaves identically on both runtimes.

One test body, run against the bundled ``Server`` (``App.server()``, in this
process) and against Hypercorn serving the same ``App`` (subprocess). The
middleware records every scope and event it sees per call; the records must
be equal event for event, and so must what the client observes.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, AsyncIterator

import pytest

import asgi_testapp
from asgi_testapp import SERVICE, E, S
from grpcasgi import Cardinality, GRPCError, Status
from grpcasgi.client import Channel

P = f"/{SERVICE}/"
AUTH = {"authorization": "Bearer good"}


@pytest.fixture(params=["bundled", "asgi"])
async def target(request: pytest.FixtureRequest) -> AsyncIterator[tuple[int, str]]:
    if request.param == "asgi":
        yield request.getfixturevalue("hc").ports["http"], "asgi"
        return
    server = asgi_testapp.grpc_app.server()
    await server.start("127.0.0.1", 0)
    assert asgi_testapp.LIFECYCLE[-1] == "startup"
    try:
        assert server.port is not None
        yield server.port, "bundled"
    finally:
        server.close()
        await server.wait_closed()
    assert asgi_testapp.LIFECYCLE[-1] == "shutdown"


async def unary(ch: Channel, method: str, request: Any, reply_type: Any, **kwargs: Any) -> Any:
    async with ch.request(P + method, Cardinality.UNARY_UNARY, type(request), reply_type, **kwargs) as stream:
        await stream.send_message(request, end=True)
        reply = await stream.recv_message()
        await stream.recv_trailing_metadata()
        return reply


def expected_records() -> dict[str, list[str]]:
    scope = "outer:scope:{0}", "inner:scope:{0}"
    unary_scope = [s.format(f"{SERVICE}/Unary:Cardinality.UNARY_UNARY") for s in scope]
    return {
        "ok": [
            *unary_scope,
            "outer:recv:grpc.request.message",
            "inner:recv:grpc.request.message",
            "inner:send:grpc.response.start",
            "outer:send:grpc.response.start",
            "inner:send:grpc.response.message",
            "outer:send:grpc.response.message",
            "inner:send:grpc.response.end:OK",
            "outer:send:grpc.response.end:OK",
        ],
        "denied": [unary_scope[0], "outer:denied"],
        "fail": [
            *(s.format(f"{SERVICE}/Fail:Cardinality.UNARY_UNARY") for s in scope),
            "outer:recv:grpc.request.message",
            "inner:recv:grpc.request.message",
            "inner:send:grpc.response.end:FAILED_PRECONDITION",
            "outer:send:grpc.response.end:FAILED_PRECONDITION",
        ],
        "bidi": [
            *(s.format(f"{SERVICE}/Bidi:Cardinality.STREAM_STREAM") for s in scope),
            "outer:recv:grpc.request.message",
            "inner:recv:grpc.request.message",
            "inner:send:grpc.response.start",
            "outer:send:grpc.response.start",
            "inner:send:grpc.response.message",
            "outer:send:grpc.response.message",
            "outer:recv:grpc.request.end",
            "inner:recv:grpc.request.end",
            "inner:send:grpc.response.end:OK",
            "outer:send:grpc.response.end:OK",
        ],
        "deadline": [
            *(s.format(f"{SERVICE}/Sleep:Cardinality.UNARY_UNARY") for s in scope),
            "outer:recv:grpc.request.message",
            "inner:recv:grpc.request.message",
            "inner:send:grpc.response.start",
            "outer:send:grpc.response.start",
            "inner:raised:CancelledError",
            "outer:raised:CancelledError",
        ],
    }


async def test_middleware_runs_identically_on_both_runtimes(target: tuple[int, str]) -> None:
    port, runtime = target
    run = uuid.uuid4().hex
    ch = Channel("127.0.0.1", port)
    try:
        reply = await unary(ch, "Unary", S(value="x"), S, metadata={**AUTH, "x-call-id": f"{run}-ok"})
        assert reply.value == f"x|alice|{runtime}"

        with pytest.raises(GRPCError) as info:
            await unary(ch, "Unary", S(value="x"), S, metadata={"x-call-id": f"{run}-denied"})
        assert (info.value.status, info.value.message) == (Status.UNAUTHENTICATED, "bad token")

        with pytest.raises(GRPCError) as info:
            await unary(ch, "Fail", E(), E, metadata={**AUTH, "x-call-id": f"{run}-fail"})
        assert (info.value.status, info.value.message) == (Status.FAILED_PRECONDITION, "nope")

        async with ch.request(P + "Bidi", Cardinality.STREAM_STREAM, S, S, metadata={"x-call-id": f"{run}-bidi"}) as bidi:
            await bidi.send_message(S(value="a"))
            assert (await bidi.recv_message()).value == "A"
            await bidi.end()
            assert await bidi.recv_message() is None

        with pytest.raises(GRPCError) as info:
            await unary(ch, "Sleep", S(value=f"{run}-deadline"), E, timeout=0.3, metadata={"x-call-id": f"{run}-deadline"})
        assert info.value.status is Status.DEADLINE_EXCEEDED
        state = await unary(ch, "SleepState", S(value=f"{run}-deadline"), S)
        assert state.value == "cancelled"

        records = {}
        for name in expected_records():
            reply = await unary(ch, "Records", S(value=f"{run}-{name}"), S)
            records[name] = json.loads(reply.value)
    finally:
        ch.close()
    assert records == expected_records()
