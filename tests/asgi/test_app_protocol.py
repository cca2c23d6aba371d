"""ASGI-protocol behaviour of ``App`` and ``GrpcDispatcher`` that Hypercorn 0.18
cannot produce (an HTTP/2 server without the trailers extension, old-style
mounts), plus the lifespan fan-out, driven by a minimal in-process ASGI
server that follows the spec (``http.disconnect`` once the response is sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, AsyncIterator

import pytest
from google.protobuf import wrappers_pb2
from starlette.applications import Starlette

from grpcasgi import Cardinality, Handler
from grpcasgi.asgi import App, GrpcDispatcher, mount_grpc
from grpcasgi.protocol.framing import encode_message

S = wrappers_pb2.StringValue


class Echo:
    async def unary(self, stream: Any) -> None:
        request = await stream.recv_message()
        await stream.send_message(S(value=request.value + "!"))

    def __mapping__(self) -> dict[str, Handler]:
        return {"/t.Echo/Unary": Handler(self.unary, Cardinality.UNARY_UNARY, S, S)}


def http_scope(path: str = "/t.Echo/Unary", *, http_version: str = "2", trailers: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "type": "http",
        "http_version": http_version,
        "method": "POST",
        "path": path,
        "root_path": "",
        "headers": [(b"host", b"x"), (b"content-type", b"application/grpc"), (b"te", b"trailers")],
        "client": ("127.0.0.1", 1234),
        "extensions": {"http.response.trailers": {}} if trailers else {},
        **extra,
    }


async def serve_once(app: Any, scope: dict[str, Any], body: bytes = b"") -> list[dict[str, Any]]:
    """Run one request through ``app`` the way an ASGI server does."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    inbox.put_nowait({"type": "http.request", "body": body, "more_body": False})
    sent: list[dict[str, Any]] = []
    wants_trailers = False

    async def send(message: dict[str, Any]) -> None:
        nonlocal wants_trailers
        sent.append(message)
        if message["type"] == "http.response.start":
            wants_trailers = bool(message.get("trailers"))
        done = message["type"] == "http.response.trailers" or (
            message["type"] == "http.response.body" and not message.get("more_body") and not wants_trailers
        )
        if done:
            inbox.put_nowait({"type": "http.disconnect"})

    await asyncio.wait_for(app(scope, inbox.get, send), 5)
    return sent


def headers_of(message: dict[str, Any]) -> dict[bytes, bytes]:
    return dict(message["headers"])


async def test_unary_call_through_the_asgi_protocol() -> None:
    sent = await serve_once(App([Echo()]), http_scope(), encode_message(S(value="hi").SerializeToString()))
    assert [m["type"] for m in sent] == [
        "http.response.start",
        "http.response.body",
        "http.response.body",
        "http.response.trailers",
    ]
    assert sent[0]["trailers"] is True and sent[0]["status"] == 200
    assert S.FromString(sent[1]["body"][5:]).value == "hi!"
    assert headers_of(sent[3])[b"grpc-status"] == b"0"


async def test_no_trailers_extension_gets_a_clear_error_and_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    app = App([Echo()])
    with caplog.at_level(logging.WARNING, logger="grpcasgi.asgi"):
        for _ in range(2):
            sent = await serve_once(app, http_scope(trailers=False))
            assert sent[0]["status"] == 501
            assert headers_of(sent[0])[b"grpc-status"] == b"12"
            assert b"http.response.trailers" in sent[1]["body"]
    warnings = [r for r in caplog.records if "http.response.trailers" in r.getMessage()]
    assert len(warnings) == 1


async def test_error_before_any_reply_is_start_empty_body_and_one_trailers() -> None:
    sent = await serve_once(App([Echo()]), http_scope("/t.Echo/Nope"), encode_message(b""))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body", "http.response.trailers"]
    assert sent[1] == {"type": "http.response.body", "body": b"", "more_body": False}
    assert headers_of(sent[2])[b"grpc-status"] == b"12"
    assert "more_trailers" not in sent[2]


async def test_bad_grpc_timeout_is_a_status_not_an_http_error() -> None:
    scope = http_scope()
    scope["headers"].append((b"grpc-timeout", b"bogus"))
    sent = await serve_once(App([Echo()]), scope)
    assert sent[0]["status"] == 200
    assert headers_of(sent[-1])[b"grpc-status"] == b"13"


@pytest.mark.parametrize(
    ("path", "root_path"),
    [
        ("/t.Echo/Unary", "/t.Echo"),  # current ASGI/Starlette: full path plus the mount point
        ("/Unary", "/t.Echo"),  # old style: the mount stripped the prefix
    ],
)
async def test_method_path_under_a_mount(path: str, root_path: str) -> None:
    body = encode_message(S(value="m").SerializeToString())
    sent = await serve_once(App([Echo()]), http_scope(path, root_path=root_path), body)
    assert headers_of(sent[-1])[b"grpc-status"] == b"0"


async def test_websocket_is_refused() -> None:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await App([Echo()])({"type": "websocket", "path": "/"}, receive, send)
    assert sent[0]["type"] == "websocket.close"


# -- lifespan ---------------------------------------------------------------------------


async def run_lifespan(app: Any) -> tuple[str, str | None]:
    """Drive startup then shutdown; returns (startup reply, shutdown reply or None)."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    task = asyncio.ensure_future(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    started = (await asyncio.wait_for(outbox.get(), 5))["type"]
    if started != "lifespan.startup.complete":
        await asyncio.wait_for(task, 5)
        return started, None
    await inbox.put({"type": "lifespan.shutdown"})
    stopped = (await asyncio.wait_for(outbox.get(), 5))["type"]
    await asyncio.wait_for(task, 5)
    return started, stopped


async def test_dispatcher_fans_lifespan_out_to_both_apps() -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def web_lifespan(app: Any) -> AsyncIterator[None]:
        events.append("web up")
        yield
        events.append("web down")

    @contextlib.asynccontextmanager
    async def grpc_lifespan(app: App) -> AsyncIterator[None]:
        events.append("grpc lifespan in")
        yield
        events.append("grpc lifespan out")

    grpc_app = App(
        [Echo()],
        on_startup=[lambda: events.append("grpc startup")],
        on_shutdown=[lambda: events.append("grpc shutdown")],
        lifespan=grpc_lifespan,
    )
    started, stopped = await run_lifespan(mount_grpc(grpc_app, Starlette(lifespan=web_lifespan)))
    assert (started, stopped) == ("lifespan.startup.complete", "lifespan.shutdown.complete")
    assert events == [
        "grpc startup",
        "grpc lifespan in",
        "web up",
        "web down",
        "grpc lifespan out",
        "grpc shutdown",
    ]


async def test_failed_web_startup_fails_the_lifespan_and_stops_grpc() -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def broken(app: Any) -> AsyncIterator[None]:
        raise RuntimeError("no database")
        yield  # pragma: no cover

    grpc_app = App([Echo()], on_startup=[lambda: events.append("up")], on_shutdown=[lambda: events.append("down")])
    started, _ = await run_lifespan(GrpcDispatcher(grpc_app, Starlette(lifespan=broken)))
    assert started == "lifespan.startup.failed"
    assert events == ["up", "down"]


async def test_app_without_lifespan_support_is_skipped() -> None:
    async def plain_http_app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http", "no lifespan support"

    events: list[str] = []
    grpc_app = App([Echo()], on_startup=[lambda: events.append("up")], on_shutdown=[lambda: events.append("down")])
    started, stopped = await run_lifespan(mount_grpc(grpc_app, plain_http_app))
    assert (started, stopped) == ("lifespan.startup.complete", "lifespan.shutdown.complete")
    assert events == ["up", "down"]


async def test_same_hooks_on_the_bundled_server() -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def pool(app: App) -> AsyncIterator[None]:
        events.append("pool open")
        yield
        events.append("pool closed")

    app = App([Echo()], on_startup=[lambda: events.append("up")], on_shutdown=[lambda: events.append("down")], lifespan=pool)
    server = app.server()
    await server.start("127.0.0.1", 0)
    assert events == ["up", "pool open"]
    server.close()
    await server.wait_closed()
    assert events == ["up", "pool open", "pool closed", "down"]


async def test_lifespan_context_for_a_starlette_mount() -> None:
    """Starlette does not pass lifespan events to mounted apps; lifespan_context does."""
    from starlette.routing import Mount

    events: list[str] = []

    class WithHooks(Echo):
        async def __on_start__(self) -> None:
            events.append("service start")

        def __on_close__(self) -> None:
            events.append("service close")

    grpc_app = App([WithHooks()], on_startup=[lambda: events.append("up")], on_shutdown=[lambda: events.append("down")])
    web = Starlette(routes=[Mount("/t.Echo", app=grpc_app)], lifespan=grpc_app.lifespan_context)
    started, stopped = await run_lifespan(web)
    assert (started, stopped) == ("lifespan.startup.complete", "lifespan.shutdown.complete")
    assert events == ["up", "service start", "service close", "down"]
