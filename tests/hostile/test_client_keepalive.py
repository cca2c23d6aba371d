"""Client keepalive: a server that stops answering fails the calls, promptly."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator

import pytest
from hostile_support import SV
from hyperframe.frame import Frame, PingFrame, SettingsFrame

from grpcasgi.client import Channel, UnaryUnaryMethod
from grpcasgi.config import Configuration
from grpcasgi.exceptions import GRPCError
from grpcasgi.protocol.status import Status


class MuteServer:
    """Accepts HTTP/2, sends its SETTINGS, then never answers anything (a hung peer)."""

    def __init__(self, *, answer_pings: bool = False) -> None:
        self.answer_pings = answer_pings
        self.pings = 0
        self.server: asyncio.AbstractServer | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        writer.write(SettingsFrame(0).serialize())
        buffer = bytearray()
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                buffer += data
                if buffer.startswith(b"PRI"):
                    del buffer[:24]
                while len(buffer) >= 9:
                    frame, length = Frame.parse_frame_header(memoryview(bytes(buffer[:9])))
                    if len(buffer) < 9 + length:
                        break
                    frame.parse_body(memoryview(bytes(buffer[9 : 9 + length])))
                    del buffer[: 9 + length]
                    if isinstance(frame, PingFrame) and "ACK" not in frame.flags:
                        self.pings += 1
                        if self.answer_pings:
                            writer.write(PingFrame(0, opaque_data=frame.opaque_data, flags=["ACK"]).serialize())
        writer.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])


@pytest.fixture
async def mute() -> AsyncIterator[Any]:
    servers: list[MuteServer] = []

    async def start(**kwargs: Any) -> MuteServer:
        server = MuteServer(**kwargs)
        server.server = await asyncio.start_server(server._handle, "127.0.0.1", 0)
        servers.append(server)
        return server

    yield start
    for server in servers:
        assert server.server is not None
        server.server.close()
        for writer in server.writers:
            writer.close()
        with contextlib.suppress(Exception):
            await server.server.wait_closed()


async def test_unanswered_keepalive_fails_the_call_unavailable(mute: Any) -> None:
    server = await mute()
    config = Configuration(keepalive_time=0.1, keepalive_timeout=0.2)
    async with Channel("127.0.0.1", server.port, config=config) as channel:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(GRPCError) as info:
            await UnaryUnaryMethod(channel, "/h.Echo/Unary", SV, SV)(SV(value="x"))  # no deadline
        assert info.value.status is Status.UNAVAILABLE
        assert "keepalive" in (info.value.message or "")
        assert loop.time() - start < 3
    assert server.pings == 1


async def test_answered_keepalive_keeps_waiting(mute: Any) -> None:
    server = await mute(answer_pings=True)
    config = Configuration(keepalive_time=0.05, keepalive_timeout=0.2)
    async with Channel("127.0.0.1", server.port, config=config) as channel:
        with pytest.raises(GRPCError) as info:
            await UnaryUnaryMethod(channel, "/h.Echo/Unary", SV, SV)(SV(value="x"), timeout=0.6)
        assert info.value.status is Status.DEADLINE_EXCEEDED  # alive but silent: only the deadline ends it
    assert server.pings >= 3


async def test_no_keepalive_without_calls_by_default(mute: Any) -> None:
    server = await mute(answer_pings=True)
    config = Configuration(keepalive_time=0.05, keepalive_timeout=0.2)
    async with Channel("127.0.0.1", server.port, config=config) as channel:
        await channel.__connect__()
        await asyncio.sleep(0.3)
        assert server.pings == 0
    permit = config.replace(keepalive_permit_without_calls=True)
    async with Channel("127.0.0.1", server.port, config=permit) as channel:
        await channel.__connect__()
        await asyncio.sleep(0.3)
        assert server.pings >= 2
