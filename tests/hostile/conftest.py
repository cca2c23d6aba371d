"""Fixtures of the hostile-input tests: an in-process server with the
``h.Echo`` service and a given :class:`Configuration`, and a check that no
test leaves a task behind (a handler task piling up is a finding here)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest
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


def _others() -> set[asyncio.Task[Any]]:
    current = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if t is not current}


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    before = _others()
    yield
    leaked: set[asyncio.Task[Any]] = set()
    for _ in range(100):
        leaked = {t for t in _others() - before if not t.done()}
        if not leaked:
            break
        await asyncio.sleep(0.01)
    for task in leaked:
        task.cancel()
    with contextlib.suppress(BaseException):
        await asyncio.gather(*leaked, return_exceptions=True)
    assert not leaked, f"tasks leaked by the test: {leaked}"
