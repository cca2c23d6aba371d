"""Fixtures of the hostile-input tests: an in-process server with the
``h.Echo`` service and a given :class:`Configuration`, and a check that no
test leaves a task behind (a handler task piling up is a finding here)."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest
from common_support import no_task_leaks
from hostile_support import Echo

from grpcasgi.config import Configuration
from grpcasgi.server import Server

Serve = Callable[..., Awaitable[tuple[Server, Echo]]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """``server, echo = await serve(**config_fields)`` → a started server on 127.0.0.1:0."""
    servers: list[Server] = []

    async def factory(**config: Any) -> tuple[Server, Echo]:
        echo = Echo()
        server = Server([echo], config=Configuration(**config))
        await server.start("127.0.0.1", 0)
        servers.append(server)
        return server, echo

    yield factory
    for server in servers:
        server.close()
    for server in servers:
        await asyncio.wait_for(server.wait_closed(), 10)


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    async with no_task_leaks(settle_turns=100):
        yield
