"""Fixtures for the client-middleware tests: loopback servers, channels, and a
check that no test leaks a task."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest

from client_mw_support import echo_service
from grpcasgi.client import Channel
from grpcasgi.server import Server

ServerFactory = Callable[..., Awaitable[Server]]


@pytest.fixture
async def start_server() -> AsyncIterator[ServerFactory]:
    """``await start_server(services, middleware=[...], config=...)`` → a started Server on 127.0.0.1:0."""
    servers: list[Server] = []

    async def factory(handlers: Any = None, **kwargs: Any) -> Server:
        server = Server(handlers if handlers is not None else [echo_service()], **kwargs)
        await server.start("127.0.0.1", 0)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.close()
    for server in servers:
        await asyncio.wait_for(server.wait_closed(), 5)


@pytest.fixture
async def make_channel() -> AsyncIterator[Callable[..., Channel]]:
    """``make_channel(port, middleware=[...], **kwargs)`` → a Channel closed at teardown."""
    channels: list[Channel] = []

    def factory(port: int | None, **kwargs: Any) -> Channel:
        channel = Channel("127.0.0.1", port, **kwargs)
        channels.append(channel)
        return channel

    yield factory
    for channel in channels:
        await channel.__aexit__(None, None, None)


def _others() -> set[asyncio.Task[Any]]:
    current = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if t is not current}


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    before = _others()
    yield
    leaked: set[asyncio.Task[Any]] = set()
    for _ in range(50):
        leaked = {t for t in _others() - before if not t.done()}
        if not leaked:
            break
        await asyncio.sleep(0.01)
    for task in leaked:
        task.cancel()
    with contextlib.suppress(BaseException):
        await asyncio.gather(*leaked, return_exceptions=True)
    assert not leaked, f"tasks leaked by the test: {leaked}"
