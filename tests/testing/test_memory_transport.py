"""The in-memory transport pair behaves like a socket: async, ordered, backpressured."""

from __future__ import annotations

import asyncio

from grpcasgi.testing import MemoryTransport, memory_pipe


class Recorder(asyncio.Protocol):
    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.events: list[str] = []
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
        self.transport: MemoryTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, MemoryTransport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data.append(data)

    def pause_writing(self) -> None:
        self.events.append("pause")

    def resume_writing(self) -> None:
        self.events.append("resume")

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append("lost")
        self.lost.set_result(exc)


async def pair(high_water: int = 64 * 1024) -> tuple[Recorder, Recorder, MemoryTransport, MemoryTransport]:
    a, b = Recorder(), Recorder()
    ta, tb = memory_pipe(asyncio.get_running_loop(), a, b, high_water=high_water, a_name=("a", 1), b_name=("b", 2))
    a.connection_made(ta)
    b.connection_made(tb)
    return a, b, ta, tb


async def turn() -> None:
    """Let the callbacks scheduled so far run."""
    await asyncio.sleep(0)


async def test_delivery_is_asynchronous_and_ordered() -> None:
    a, b, ta, tb = await pair()
    ta.write(b"one")
    ta.write(memoryview(b"two"))
    assert b.data == []  # never inside write()
    assert ta.get_write_buffer_size() == 6
    await turn()
    assert b.data == [b"one", b"two"]
    assert ta.get_write_buffer_size() == 0
    tb.write(b"back")
    await turn()
    assert a.data == [b"back"]


async def test_extra_info() -> None:
    a, b, ta, tb = await pair()
    assert ta.get_extra_info("peername") == ("b", 2)
    assert ta.get_extra_info("sockname") == ("a", 1)
    assert tb.get_extra_info("peername") == ("a", 1)
    assert ta.get_extra_info("ssl_object") is None
    assert ta.get_protocol() is a


async def test_backpressure_pauses_and_resumes_the_writer() -> None:
    a, b, ta, tb = await pair(high_water=100)
    assert ta.get_write_buffer_limits() == (25, 100)
    ta.write(b"x" * 60)
    assert a.events == []
    ta.write(b"x" * 60)
    assert a.events == ["pause"]
    ta.write(b"x" * 60)  # still paused: no second pause
    assert a.events == ["pause"]
    await turn()
    assert a.events == ["pause", "resume"]
    assert sum(map(len, b.data)) == 180


async def test_paused_reading_holds_data_and_keeps_the_writer_paused() -> None:
    a, b, ta, tb = await pair(high_water=100)
    tb.pause_reading()
    assert not tb.is_reading()
    ta.write(b"x" * 150)
    await turn()
    assert b.data == []
    assert a.events == ["pause"]
    assert ta.get_write_buffer_size() == 150
    tb.resume_reading()
    await turn()
    assert b.data == [b"x" * 150]
    assert a.events == ["pause", "resume"]


async def test_close_delivers_pending_data_then_both_sides_lose_the_connection() -> None:
    a, b, ta, tb = await pair()
    ta.write(b"last words")
    ta.close()
    assert ta.is_closing()
    ta.write(b"dropped")
    assert await asyncio.wait_for(a.lost, 5) is None
    assert await asyncio.wait_for(b.lost, 5) is None
    assert b.data == [b"last words"]
    assert a.events == b.events == ["lost"]
    tb.write(b"nowhere")  # writing to a closed pipe is ignored, as on a closed socket
    await turn()
    assert a.data == []


async def test_abort_drops_data_in_flight() -> None:
    a, b, ta, tb = await pair()
    ta.write(b"never seen")
    ta.abort()
    await asyncio.wait_for(asyncio.gather(a.lost, b.lost), 5)
    assert b.data == []
    ta.abort()  # idempotent
    tb.close()
    await turn()
    assert a.events == b.events == ["lost"]
