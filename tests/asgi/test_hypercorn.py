"""grpcasgi under a real Hypercorn process, on one port with a Starlette web app.

Everything goes over loopback sockets to ``python -m hypercorn`` serving
``asgi_testapp:app`` (see ``conftest.hc``): grpcio and grpcasgi clients, httpx
over HTTP/1.1 and HTTP/2, TLS with ALPN.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from typing import Any, AsyncIterator

import grpc
import httpx
import pytest

from asgi_procs import ServerProcess, hypercorn
from asgi_testapp import SERVICE, B, E, I32, S
from grpcasgi import Cardinality, Configuration, GRPCError, Status
from grpcasgi.client import Channel

P = f"/{SERVICE}/"
AUTH = {"authorization": "Bearer good"}


@pytest.fixture
async def channel(hc: ServerProcess) -> AsyncIterator[Channel]:
    ch = Channel("127.0.0.1", hc.ports["http"])
    yield ch
    ch.close()


async def unary(ch: Channel, method: str, request: Any, reply_type: Any, **kwargs: Any) -> Any:
    async with ch.request(P + method, Cardinality.UNARY_UNARY, type(request), reply_type, **kwargs) as stream:
        await stream.send_message(request, end=True)
        reply = await stream.recv_message()
        await stream.recv_trailing_metadata()
        return reply


# -- the four call shapes --------------------------------------------------------


async def test_four_shapes_with_grpcasgi_client(channel: Channel) -> None:
    assert (await unary(channel, "Unary", S(value="hi"), S, metadata=AUTH)).value == "hi|alice|asgi"

    async with channel.request(P + "ServerStream", Cardinality.UNARY_STREAM, I32, I32) as stream:
        await stream.send_message(I32(value=3), end=True)
        assert [m.value async for m in stream] == [0, 1, 2]

    async with channel.request(P + "ClientStream", Cardinality.STREAM_UNARY, S, S) as stream:
        for part in "abc":
            await stream.send_message(S(value=part))
        await stream.end()
        assert (await stream.recv_message()).value == "a,b,c"

    async with channel.request(P + "Bidi", Cardinality.STREAM_STREAM, S, S) as stream:
        for part in ("x", "y"):
            await stream.send_message(S(value=part))
            assert (await stream.recv_message()).value == part.upper()
        await stream.end()
        assert await stream.recv_message() is None

    with pytest.raises(GRPCError) as info:
        await unary(channel, "Fail", E(), E, metadata=AUTH)
    assert (info.value.status, info.value.message) == (Status.FAILED_PRECONDITION, "nope")


def test_four_shapes_with_grpcio_client(hc: ServerProcess) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{hc.ports['http']}") as ch:
        def method(kind: str, name: str, req: Any, rep: Any) -> Any:
            return getattr(ch, kind)(P + name, request_serializer=req.SerializeToString, response_deserializer=rep.FromString)

        reply = method("unary_unary", "Unary", S, S)(S(value="hi"), metadata=[("authorization", "Bearer good")], timeout=10)
        assert reply.value == "hi|alice|asgi"
        assert [m.value for m in method("unary_stream", "ServerStream", I32, I32)(I32(value=4), timeout=10)] == [0, 1, 2, 3]
        reply = method("stream_unary", "ClientStream", S, S)(iter([S(value="p"), S(value="q")]), timeout=10)
        assert reply.value == "p,q"
        replies = method("stream_stream", "Bidi", S, S)(iter([S(value="m"), S(value="n")]), timeout=10)
        assert [m.value for m in replies] == ["M", "N"]
        with pytest.raises(grpc.RpcError) as info:
            method("unary_unary", "Unary", S, S)(S(value="hi"), timeout=10)
        assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as info:
            method("unary_unary", "Missing", S, S)(S(value="hi"), metadata=[("authorization", "Bearer good")], timeout=10)
        assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED


# -- the web app on the same port ---------------------------------------------------


async def test_web_route_over_http1_and_http2_beside_grpc(hc: ServerProcess, client_ssl: ssl.SSLContext) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{hc.ports['http']}/hello")
    assert response.http_version == "HTTP/1.1"
    assert response.text.startswith("hello over HTTP/1.1")
    # The HTTP middleware (BaseHTTPMiddleware, GZipMiddleware) ran on the web app...
    assert response.headers["x-web-middleware"] == "yes"
    assert response.headers["content-encoding"] == "gzip"

    async with httpx.AsyncClient(http2=True, verify=client_ssl) as client:
        response = await client.get(f"https://127.0.0.1:{hc.ports['https']}/hello")
    assert response.http_version == "HTTP/2"
    assert response.text.startswith("hello over HTTP/2")
    assert response.headers["x-web-middleware"] == "yes"

    # ...and never on gRPC, which still gets its trailers on the same port.
    async with httpx.AsyncClient(http1=False, http2=True) as client:
        response = await client.get(f"http://127.0.0.1:{hc.ports['http']}/hello")
    assert response.http_version == "HTTP/2"
    ch = Channel("127.0.0.1", hc.ports["http"])
    try:
        async with ch.request(P + "Unary", Cardinality.UNARY_UNARY, S, S, metadata=AUTH) as stream:
            await stream.send_message(S(value="t"), end=True)
            await stream.recv_message()
            await stream.recv_trailing_metadata()
            assert "x-web-middleware" not in stream.initial_metadata
            assert "content-encoding" not in stream.initial_metadata
    finally:
        ch.close()


async def test_grpc_over_http1_gets_a_clear_error(hc: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"http://127.0.0.1:{hc.ports['http']}{P}Unary",
            content=b"\x00\x00\x00\x00\x00",
            headers={"content-type": "application/grpc", "te": "trailers"},
        )
    assert response.status_code == 505
    assert "gRPC requires HTTP/2" in response.text
    assert response.headers["grpc-status"] == str(Status.INTERNAL.value)


async def test_http2_request_without_te_trailers_is_refused(hc: ServerProcess) -> None:
    async with httpx.AsyncClient(http1=False, http2=True) as client:
        response = await client.post(
            f"http://127.0.0.1:{hc.ports['http']}{P}Unary",
            content=b"\x00\x00\x00\x00\x00",
            headers={"content-type": "application/grpc"},
        )
    assert response.http_version == "HTTP/2"
    assert response.status_code == 400
    assert "te: trailers" in response.text


# -- flow control, head-of-line blocking, large messages -------------------------------


async def test_non_reading_handler_does_not_stall_other_calls(channel: Channel) -> None:
    """Hypercorn queues 10 chunks per stream and stalls the connection when the queue
    is full; the adapter drains it, so a parallel call on the same connection runs."""
    chunk = B(value=b"x" * 16000)
    async with channel.request(P + "NoRead", Cardinality.STREAM_UNARY, B, E, timeout=30) as stuck:
        await stuck.send_request()
        await stuck.recv_initial_metadata()

        async def flood() -> None:
            for _ in range(64):  # ~1 MiB in ~64 DATA frames, far beyond Hypercorn's queue
                await stuck.send_message(chunk)

        await asyncio.wait_for(flood(), 10)
        reply = await asyncio.wait_for(unary(channel, "Unary", S(value="still"), S, metadata=AUTH), 10)
        assert reply.value == "still|alice|asgi"
        await stuck.cancel()


async def test_four_mib_messages_both_ways(hc: ServerProcess) -> None:
    ch = Channel("127.0.0.1", hc.ports["http"], config=Configuration(max_receive_message_length=8 * 1024 * 1024))
    try:
        payload = bytes(range(256)) * (4 * 1024 * 1024 // 256)
        reply = await asyncio.wait_for(unary(ch, "Big", B(value=payload), B), 30)
        assert reply.value == payload[::-1]
    finally:
        ch.close()


# -- deadlines and cancellation -------------------------------------------------------


async def sleep_state(ch: Channel, key: str) -> str:
    return str((await unary(ch, "SleepState", S(value=key), S)).value)


async def test_deadline_cancels_the_handler(channel: Channel) -> None:
    key = uuid.uuid4().hex
    with pytest.raises(GRPCError) as info:
        await unary(channel, "Sleep", S(value=key), E, timeout=0.5)
    assert info.value.status is Status.DEADLINE_EXCEEDED
    assert await sleep_state(channel, key) == "cancelled"


def test_deadline_with_grpcio(hc: ServerProcess) -> None:
    key = uuid.uuid4().hex
    with grpc.insecure_channel(f"127.0.0.1:{hc.ports['http']}") as ch:
        call = ch.unary_unary(P + "Sleep", request_serializer=S.SerializeToString, response_deserializer=E.FromString)
        with pytest.raises(grpc.RpcError) as info:
            call(S(value=key), timeout=0.5)
        assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        state = ch.unary_unary(P + "SleepState", request_serializer=S.SerializeToString, response_deserializer=S.FromString)
        assert state(S(value=key), timeout=10).value == "cancelled"


async def test_client_cancel_cancels_the_handler(channel: Channel) -> None:
    key = uuid.uuid4().hex
    async with channel.request(P + "Sleep", Cardinality.UNARY_UNARY, S, E, timeout=30) as stream:
        await stream.send_message(S(value=key), end=True)
        await stream.recv_initial_metadata()  # the handler is running
        await stream.cancel()
    assert await sleep_state(channel, key) == "cancelled"


# -- TLS --------------------------------------------------------------------------------


async def test_tls_with_alpn(hc: ServerProcess, client_ssl: ssl.SSLContext, ca: Any) -> None:
    ch = Channel("127.0.0.1", hc.ports["https"], ssl=client_ssl)
    try:
        assert (await unary(ch, "Unary", S(value="tls"), S, metadata=AUTH)).value == "tls|alice|asgi"
    finally:
        ch.close()
    credentials = grpc.ssl_channel_credentials(root_certificates=ca.cert_pem.bytes())
    with grpc.secure_channel(f"localhost:{hc.ports['https']}", credentials) as gch:
        call = gch.unary_unary(P + "Unary", request_serializer=S.SerializeToString, response_deserializer=S.FromString)
        assert call(S(value="tls"), metadata=[("authorization", "Bearer good")], timeout=10).value == "tls|alice|asgi"


# -- lifespan ---------------------------------------------------------------------------


async def test_lifespan_ran_the_startup_hook(channel: Channel) -> None:
    """Hypercorn's lifespan reached App.startup through the dispatcher's fan-out."""
    assert (await unary(channel, "Lifecycle", E(), S)).value == "startup"


# -- Starlette Mount by service path ------------------------------------------------------


async def test_starlette_mount_by_service_path() -> None:
    server = hypercorn("asgi_testapp:mounted_app", "--bind", "127.0.0.1:0")
    try:
        ch = Channel("127.0.0.1", server.ports["http"])
        try:
            assert (await unary(ch, "Unary", S(value="m"), S, metadata=AUTH)).value == "m|alice|asgi"
            assert (await unary(ch, "Lifecycle", E(), S)).value == "startup"
            with pytest.raises(GRPCError) as info:
                await unary(ch, "Unary", S(value="m"), S)
            assert info.value.status is Status.UNAUTHENTICATED
        finally:
            ch.close()
        with grpc.insecure_channel(f"127.0.0.1:{server.ports['http']}") as gch:
            call = gch.unary_stream(P + "ServerStream", request_serializer=I32.SerializeToString, response_deserializer=I32.FromString)
            assert [m.value for m in call(I32(value=2), timeout=10)] == [0, 1]
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{server.ports['http']}/hello")
        assert response.status_code == 200 and response.text.startswith("hello over HTTP/1.1")
    finally:
        code = server.stop()
    assert code == 0 and "Traceback" not in server.log, server.log


async def test_call_ended_while_client_still_streams_keeps_the_connection(channel: Channel) -> None:
    """DATA arriving after a call ended used to kill Hypercorn's whole connection
    (KeyError, hypercorn#329); grpcasgi.asgi installs the fix. Another call in
    flight on the connection must carry on."""
    async with channel.request(P + "Bidi", Cardinality.STREAM_STREAM, S, S, timeout=30) as bidi:
        await bidi.send_message(S(value="before"))
        assert (await bidi.recv_message()).value == "BEFORE"

        async with channel.request(P + "Missing", Cardinality.STREAM_UNARY, S, S, metadata=AUTH) as doomed:
            with pytest.raises(GRPCError) as info:
                for _ in range(200):
                    await doomed.send_message(S(value="z" * 1000))
                await doomed.end()
                await doomed.recv_message()
            if info.value.status is not Status.UNIMPLEMENTED:
                with pytest.raises(GRPCError) as info:
                    await doomed.recv_message()
            assert info.value.status is Status.UNIMPLEMENTED

        await bidi.send_message(S(value="after"))
        assert (await bidi.recv_message()).value == "AFTER"
        await bidi.end()
        assert await bidi.recv_message() is None
