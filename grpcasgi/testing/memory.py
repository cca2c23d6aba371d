"""An in-memory, socket-like pair of ``asyncio`` transports.

:class:`~grpcasgi.testing.ChannelFor` connects a real ``H2ClientProtocol`` to
a real ``H2ServerProtocol`` through these, so a test exercises the whole
HTTP/2 and gRPC stack without a socket. To be a faithful stand-in for TCP the
pipe keeps the properties the protocols rely on:

* **Asynchronous delivery.** ``write`` never calls into the peer directly;
  bytes reach the peer's ``data_received`` from a ``loop.call_soon`` callback,
  in order. Re-entrancy a real socket never causes (the peer answering inside
  our own ``write``) cannot happen here either.
* **Backpressure.** Bytes written but not yet consumed by the peer count
  against a high-water mark; crossing it calls ``pause_writing`` on the
  writer's protocol and draining below the low-water mark calls
  ``resume_writing``, as ``asyncio``'s socket transports do. A peer whose
  reading is paused (``pause_reading``) holds its input, so the writer's
  buffer stays full.
* **Orderly shutdown.** ``close`` lets already written bytes arrive, then
  both protocols get ``connection_lost(None)``; ``abort`` drops them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

__all__ = ["MemoryTransport", "memory_pipe"]

#: Default high-water mark of a pipe end, as for ``asyncio`` socket transports.
DEFAULT_HIGH_WATER = 64 * 1024


class MemoryTransport(asyncio.Transport):
    """One end of an in-memory byte pipe (see the module docstring)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        protocol: asyncio.Protocol,
        *,
        peername: Any = ("in-process", 0),
        sockname: Any = ("in-process", 0),
        high_water: int = DEFAULT_HIGH_WATER,
    ) -> None:
        super().__init__(extra={"peername": peername, "sockname": sockname})
        self._loop = loop
        self._protocol = protocol
        self._peer: MemoryTransport | None = None
        self._high = high_water
        self._low = high_water // 4
        self._buffered = 0  # written by us, not yet consumed by the peer's protocol
        self._writing_paused = False  # we told our protocol to pause writing
        self._reading_paused = False
        self._held: deque[tuple[bytes, MemoryTransport]] = deque()  # input while reading is paused
        self._closing = False
        self._lost = False

    # -- asyncio.BaseTransport ------------------------------------------------

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.Protocol)
        self._protocol = protocol

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Close after the bytes already written have been delivered."""
        if self._closing:
            return
        self._closing = True
        # call_soon is FIFO: every delivery scheduled so far runs first.
        self._loop.call_soon(self._shutdown, None)

    def abort(self) -> None:
        """Close now; bytes in flight are dropped."""
        self._closing = True
        self._shutdown(None)

    # -- asyncio.ReadTransport ------------------------------------------------

    def is_reading(self) -> bool:
        return not self._reading_paused and not self._closing

    def pause_reading(self) -> None:
        self._reading_paused = True

    def resume_reading(self) -> None:
        if not self._reading_paused:
            return
        self._reading_paused = False
        if self._held:
            self._loop.call_soon(self._release_held)

    # -- asyncio.WriteTransport -----------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        peer = self._peer
        if self._closing or peer is None or peer._lost:
            return  # like a closed socket: the bytes go nowhere
        chunk = bytes(data)
        if not chunk:
            return
        self._buffered += len(chunk)
        self._loop.call_soon(peer._receive, chunk, self)
        if not self._writing_paused and self._buffered > self._high:
            self._writing_paused = True
            self._protocol.pause_writing()

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        raise NotImplementedError("in-memory transports do not support half-close")

    def get_write_buffer_size(self) -> int:
        return self._buffered

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low, self._high)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = DEFAULT_HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not 0 <= low <= high:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high = high
        self._low = low

    # -- delivery -------------------------------------------------------------

    def _receive(self, data: bytes, sender: "MemoryTransport") -> None:
        if self._lost:
            sender._consumed(len(data))
            return
        if self._reading_paused or self._held:
            self._held.append((data, sender))
            return
        try:
            self._protocol.data_received(data)
        finally:
            sender._consumed(len(data))

    def _release_held(self) -> None:
        while self._held and not self._reading_paused and not self._lost:
            data, sender = self._held.popleft()
            try:
                self._protocol.data_received(data)
            finally:
                sender._consumed(len(data))

    def _consumed(self, n: int) -> None:
        self._buffered -= n
        if self._writing_paused and self._buffered <= self._low and not self._lost:
            self._writing_paused = False
            self._protocol.resume_writing()

    def _shutdown(self, exc: Exception | None) -> None:
        self._lose(exc)
        peer = self._peer
        if peer is not None:
            peer._closing = True
            peer._lose(exc)

    def _lose(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._closing = True
        held, self._held = self._held, deque()
        for data, sender in held:
            sender._consumed(len(data))
        self._loop.call_soon(self._protocol.connection_lost, exc)

    def __repr__(self) -> str:
        state = "closed" if self._lost else "closing" if self._closing else "open"
        return f"<MemoryTransport {self.get_extra_info('sockname')!r} {state} buffered={self._buffered}>"


def memory_pipe(
    loop: asyncio.AbstractEventLoop,
    a: asyncio.Protocol,
    b: asyncio.Protocol,
    *,
    high_water: int = DEFAULT_HIGH_WATER,
    a_name: Any = ("in-process", 0),
    b_name: Any = ("in-process", 0),
) -> tuple[MemoryTransport, MemoryTransport]:
    """Two connected transports: what ``a`` writes ``b`` receives, and back.

    The protocols' ``connection_made`` is left to the caller, so it decides
    which side speaks first.
    """
    ta = MemoryTransport(loop, a, peername=b_name, sockname=a_name, high_water=high_water)
    tb = MemoryTransport(loop, b, peername=a_name, sockname=b_name, high_water=high_water)
    ta._peer = tb
    tb._peer = ta
    return ta, tb
