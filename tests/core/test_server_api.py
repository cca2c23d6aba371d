"""The ``Server`` API: where it listens (TCP, UNIX socket, a given socket,
SO_REUSEPORT, TLS and mTLS) and how it stops (close, wait_closed, async with).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any

import pytest

from core_helpers import SS, SV, UU, Service, echo_service
from grpcasgi.client import Channel, UnaryUnaryMethod
from grpcasgi.config import Configuration
from grpcasgi.exceptions import GRPCError
from grpcasgi.protocol.status import Status
from grpcasgi.server import Server


async def _echo(channel: Channel, text: str = "hi") -> str:
    reply = await UnaryUnaryMethod(channel, "/core.Echo/Unary", SV, SV)(SV(value=text))
    return str(reply.value)


async def test_start_on_port_zero_reports_port(make_channel: Any) -> None:
    server = Server([echo_service()])
    assert server.port is None
    await server.start("127.0.0.1", 0)
    try:
        assert isinstance(server.port, int) and server.port > 0
        assert await _echo(make_channel(server.port)) == "hi"
    finally:
        server.close()
        await server.wait_closed()


async def test_unix_socket(start_server: Any, make_channel: Any, tmp_path: Any) -> None:
    path = str(tmp_path / "grpc.sock")
    server = await start_server(path=path)
    assert server.port is None
    channel = make_channel(path=path)
    assert await _echo(channel) == "hi"


async def test_unix_socket_peer(start_server: Any, make_channel: Any, tmp_path: Any) -> None:
    seen: list[Any] = []

    async def handler(stream: Any) -> None:
        seen.append(stream.peer.addr())
        await stream.send_message(SV(value="ok"))

    path = str(tmp_path / "grpc.sock")
    await start_server([Service("core.T", M=(handler, UU))], path=path)
    method = UnaryUnaryMethod(make_channel(path=path), "/core.T/M", SV, SV)
    assert (await method(SV())).value == "ok"
    assert seen and isinstance(seen[0], str)


async def test_given_socket(start_server: Any, make_channel: Any) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = await start_server(sock=sock)
    assert server.port == port
    assert await _echo(make_channel(port)) == "hi"


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="needs SO_REUSEPORT")
async def test_reuse_port_lets_two_servers_share_a_port(start_server: Any, make_channel: Any) -> None:
    first = await start_server(host="127.0.0.1", port=0, reuse_port=True)
    second = await start_server(host="127.0.0.1", port=first.port, reuse_port=True)
    assert second.port == first.port
    assert await _echo(make_channel(first.port)) == "hi"
    # Without reuse_port the port is taken.
    with pytest.raises(OSError):
        await start_server(host="127.0.0.1", port=first.port)


async def test_start_twice_is_an_error(server: Server) -> None:
    with pytest.raises(RuntimeError):
        await server.start("127.0.0.1", 0)


async def test_path_with_host_is_an_error(tmp_path: Any) -> None:
    with pytest.raises(ValueError):
        await Server([echo_service()]).start("127.0.0.1", path=str(tmp_path / "x.sock"))


async def test_sock_with_port_is_an_error() -> None:
    with socket.socket() as sock:
        with pytest.raises(ValueError):
            await Server([echo_service()]).start(port=0, sock=sock)


async def test_start_without_address_is_an_error() -> None:
    with pytest.raises(ValueError):
        await Server([echo_service()]).start()


# -- TLS ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> Any:
    trustme = pytest.importorskip("trustme")
    return trustme.CA()


def _server_ctx(ca: Any, require_client_cert: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    if require_client_cert:
        ca.configure_trust(ctx)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _client_ctx(ca: Any, client_cert: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(ctx)
    if client_cert is not None:
        ca.issue_cert(client_cert).configure_cert(ctx)
    return ctx


def _peer_service(seen: list[Any]) -> Service:
    async def handler(stream: Any) -> None:
        await stream.recv_message()
        seen.append((stream.peer.cert(), stream.peer.is_secure))
        await stream.send_message(SV(value="secure"))

    return Service("core.T", M=(handler, UU))


async def test_tls_with_alpn_h2(start_server: Any, make_channel: Any, ca: Any) -> None:
    seen: list[Any] = []
    server = await start_server([_peer_service(seen)], ssl=_server_ctx(ca))
    channel = make_channel(server.port, ssl=_client_ctx(ca))
    method = UnaryUnaryMethod(channel, "/core.T/M", SV, SV)
    assert (await method(SV())).value == "secure"
    assert seen == [(None, True)]


async def test_tls_by_hostname(start_server: Any, make_channel: Any, ca: Any) -> None:
    seen: list[Any] = []
    server = await start_server([_peer_service(seen)], ssl=_server_ctx(ca))
    channel = make_channel(server.port, ssl=_client_ctx(ca), server_hostname="localhost")
    assert (await UnaryUnaryMethod(channel, "/core.T/M", SV, SV)(SV())).value == "secure"


async def test_tls_untrusted_server_is_unavailable(start_server: Any, make_channel: Any, ca: Any) -> None:
    import trustme

    server = await start_server(ssl=_server_ctx(ca))
    channel = make_channel(server.port, ssl=_client_ctx(trustme.CA()))
    with pytest.raises(GRPCError) as info:
        await _echo(channel)
    assert info.value.status is Status.UNAVAILABLE
    assert "certificate" in (info.value.message or "").lower()


async def test_plaintext_client_to_tls_server_fails_cleanly(start_server: Any, make_channel: Any, ca: Any) -> None:
    server = await start_server(ssl=_server_ctx(ca))
    with pytest.raises(GRPCError) as info:
        await UnaryUnaryMethod(make_channel(server.port), "/core.Echo/Unary", SV, SV)(SV(), timeout=5)
    assert info.value.status is Status.UNAVAILABLE


async def test_mtls_peer_cert(start_server: Any, make_channel: Any, ca: Any) -> None:
    seen: list[Any] = []
    server = await start_server([_peer_service(seen)], ssl=_server_ctx(ca, require_client_cert=True))
    channel = make_channel(server.port, ssl=_client_ctx(ca, client_cert="client.example.org"))
    assert (await UnaryUnaryMethod(channel, "/core.T/M", SV, SV)(SV())).value == "secure"
    cert, secure = seen[0]
    assert secure
    san = dict(cert["subjectAltName"])
    assert san["DNS"] == "client.example.org"
    assert cert["subject"]  # the client certificate's subject


async def test_mtls_without_client_cert_is_refused(start_server: Any, make_channel: Any, ca: Any) -> None:
    seen: list[Any] = []
    server = await start_server([_peer_service(seen)], ssl=_server_ctx(ca, require_client_cert=True))
    channel = make_channel(server.port, ssl=_client_ctx(ca))
    with pytest.raises(GRPCError) as info:
        await UnaryUnaryMethod(channel, "/core.T/M", SV, SV)(SV(), timeout=5)
    assert info.value.status is Status.UNAVAILABLE
    assert seen == []


async def test_tls_grpcio_client(start_server: Any, ca: Any) -> None:
    import grpc

    from core_helpers import grpcio_method

    server = await start_server(ssl=_server_ctx(ca))
    creds = grpc.ssl_channel_credentials(root_certificates=ca.cert_pem.bytes())
    async with grpc.aio.secure_channel(
        f"localhost:{server.port}", creds
    ) as ch:
        reply = await grpcio_method(ch, "/core.Echo/Unary", UU)(SV(value="tls"))
    assert reply.value == "tls"


# -- stopping ------------------------------------------------------------------------


async def test_close_cancels_running_handlers(make_channel: Any) -> None:
    started, cleaned_up = asyncio.Event(), asyncio.Event()

    async def handler(stream: Any) -> None:
        await stream.recv_message()
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cleaned_up.set()
            raise

    server = Server([Service("core.T", M=(handler, SS))])
    await server.start("127.0.0.1", 0)
    channel = make_channel(server.port)
    async with channel.request("/core.T/M", SS, SV, SV) as stream:
        await stream.send_message(SV(value="x"))
        await asyncio.wait_for(started.wait(), 3)
        server.close()
        await asyncio.wait_for(server.wait_closed(), 5)
        assert cleaned_up.is_set()
        with pytest.raises(GRPCError) as info:
            await stream.recv_message()
        assert info.value.status is Status.UNAVAILABLE


async def test_close_with_grace_lets_calls_finish(make_channel: Any) -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    async def handler(stream: Any) -> None:
        await stream.recv_message()
        started.set()
        await release.wait()
        await stream.send_message(SV(value="finished"))

    server = Server([Service("core.T", M=(handler, UU))], config=Configuration(shutdown_grace=5))
    await server.start("127.0.0.1", 0)
    channel = make_channel(server.port)
    call = asyncio.ensure_future(UnaryUnaryMethod(channel, "/core.T/M", SV, SV)(SV()))
    await asyncio.wait_for(started.wait(), 3)
    server.close()
    closed = asyncio.ensure_future(server.wait_closed())
    await asyncio.sleep(0)
    assert not closed.done()
    release.set()
    assert (await asyncio.wait_for(call, 3)).value == "finished"
    await asyncio.wait_for(closed, 3)


async def test_new_connections_refused_after_close(make_channel: Any) -> None:
    server = Server([echo_service()])
    await server.start("127.0.0.1", 0)
    port = server.port
    server.close()
    await server.wait_closed()
    with pytest.raises(GRPCError) as info:
        await _echo(make_channel(port))
    assert info.value.status is Status.UNAVAILABLE


async def test_close_with_idle_connection(make_channel: Any) -> None:
    """wait_closed returns while a client still holds an idle connection open."""
    server = Server([echo_service()])
    await server.start("127.0.0.1", 0)
    channel = make_channel(server.port)
    assert await _echo(channel) == "hi"
    server.close()
    await asyncio.wait_for(server.wait_closed(), 3)
    # The channel notices and reports UNAVAILABLE for the next call.
    with pytest.raises(GRPCError) as info:
        await _echo(channel)
    assert info.value.status is Status.UNAVAILABLE


async def test_async_context_manager(make_channel: Any) -> None:
    async with Server([echo_service()]) as server:
        await server.start("127.0.0.1", 0)
        assert await _echo(make_channel(server.port)) == "hi"
    assert server.sockets == ()


async def test_close_and_wait_closed_are_idempotent() -> None:
    server = Server([echo_service()])
    await server.start("127.0.0.1", 0)
    server.close()
    server.close()
    await server.wait_closed()
    await server.wait_closed()


async def test_closed_before_start_does_not_start() -> None:
    server = Server([echo_service()])
    server.close()
    await server.start("127.0.0.1", 0)
    assert server.port is None
    await server.wait_closed()


async def test_wait_closed_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        await Server([echo_service()]).wait_closed()


async def test_start_and_close_hooks(make_channel: Any) -> None:
    events: list[str] = []

    class WithHooks(Service):
        async def __on_start__(self) -> None:
            events.append("start")

        def __on_close__(self) -> None:
            events.append("close")

    async with Server([WithHooks("core.H")]) as server:
        await server.start("127.0.0.1", 0)
        assert events == ["start"]
    assert events == ["start", "close"]
