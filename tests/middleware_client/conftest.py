"""Fixtures for the client-middleware tests: loopback servers, channels, and a
check that no test leaks a task."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest

from client_mw_support import echo_service
from common_support import no_task_leaks
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


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    async with no_task_leaks(settle_turns=50):
        yield
