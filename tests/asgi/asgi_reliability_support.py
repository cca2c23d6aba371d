"""Helpers of the ASGI reliability tests (Hypercorn serving ``asgi_reliability_app:app``).

* :func:`start` runs the Hypercorn process (:func:`running` also fails the
  test if it did not exit cleanly); :func:`diag` asks it what only it can
  see (tasks, reader tasks, memory, ``Hold`` counts); the :func:`channel`
  fixture is a grpcasgi Channel to the module's ``server`` fixture;
* :class:`RawClient` is an HTTP/2 client on a real socket built on ``h2``
  whose flow control and GOAWAY handling the test decides: a stream listed in
  ``uncredited`` never gets its window back (a client that stops reading
  one call but keeps the connection window open, as grpc-go and grpcasgi do),
  a GOAWAY only records itself (h2 would close the connection state and
  refuse to send the request the test wants to see refused), and
  :meth:`RawClient.abort` drops the TCP connection without a goodbye;
* :func:`logged` waits for a line of the server's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, AsyncIterator, Iterator

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import pytest

from asgi_procs import ServerProcess, hypercorn
from core_helpers import RawConnectionBase, RawResponse, frame, grpc_request_headers
from grpcasgi import Cardinality
from grpcasgi.client import Channel
from google.protobuf import wrappers_pb2

S = wrappers_pb2.StringValue
APP = "asgi_reliability_app:app"
__all__ = ["APP", "RawClient", "S", "channel", "diag", "frame", "grpc_request_headers", "logged", "running", "start"]


def start(*args: str) -> ServerProcess:
    """Hypercorn (graceful_timeout 2 s, see ``asgi_procs.hypercorn``) on an h2c port."""
    return hypercorn(APP, "--bind", "127.0.0.1:0", *args)


@contextlib.contextmanager
def running(*args: str) -> Iterator[ServerProcess]:
    """:func:`start`, stopped on exit; then fails unless it exited 0 with no traceback in its log."""
    proc = start(*args)
    try:
        yield proc
    finally:
        code = proc.stop()
    assert code == 0, proc.log
    assert "Traceback" not in proc.log, proc.log


@pytest.fixture
async def channel(server: ServerProcess) -> AsyncIterator[Channel]:
    """A Channel to the ``server`` fixture's h2c port (test modules import this fixture to use it)."""
    ch = Channel("127.0.0.1", server.ports["http"])
    yield ch
    ch.close()


async def diag(ch: Channel, **options: Any) -> dict[str, Any]:
    """The server's ``Diag/State`` snapshot (options: ``tasks_at_most``, ``collect``)."""
    async with ch.request("/test.asgi.Diag/State", Cardinality.UNARY_UNARY, S, S, timeout=10) as stream:
        await stream.send_message(S(value=json.dumps(options)), end=True)
        reply = await stream.recv_message()
        await stream.recv_trailing_metadata()
    result: dict[str, Any] = json.loads(reply.value)
    return result


async def logged(server: ServerProcess, start_line: int, *needles: str, timeout: float = 5.0) -> str:
    """The first log line after ``start_line`` containing every needle (case-insensitive).

    The server writes the line before it answers, but the thread reading its
    pipe may not have caught up yet, hence the bounded wait.
    """
    wanted = [n.lower() for n in needles]
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        for line in server.lines[start_line:]:
            if all(n in line.lower() for n in wanted):
                return line
        if loop.time() > end:
            raise AssertionError(f"no log line with {needles!r}; the log since:\n{''.join(server.lines[start_line:])}")
        await asyncio.sleep(0.01)


class _Connection(h2.connection.H2Connection):
    """Keeps the connection usable after a NO_ERROR GOAWAY (see the module docstring)."""

    def _receive_goaway_frame(self, frame: Any) -> tuple[list[Any], list[Any]]:
        if frame.error_code != 0:
            result: tuple[list[Any], list[Any]] = super()._receive_goaway_frame(frame)
            return result
        event = h2.events.ConnectionTerminated()
        event.error_code = 0
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data
        return [], [event]


class RawClient(RawConnectionBase):
    """An HTTP/2 client whose flow control and GOAWAY handling the test decides
    (see the module docstring); like ``core_helpers.RawH2`` it has no task of
    its own: frames are read only while a test awaits :meth:`read_until` or
    :meth:`response`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = _Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None, validate_outbound_headers=False)
        )
        self.responses: dict[int, RawResponse] = {}
        self.uncredited: set[int] = set()
        self.received: dict[int, int] = {}  # stream -> DATA bytes received
        self.goaways: list[h2.events.ConnectionTerminated] = []
        self.closed = False

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.writer.is_closing():
            self.writer.write(data)

    def request(self, path: str, body: bytes = b"", *, end: bool = True, **headers: Any) -> int:
        sid: int = self.conn.get_next_available_stream_id()
        self.responses[sid] = RawResponse()
        self.conn.send_headers(sid, grpc_request_headers(path, **headers), end_stream=end and not body)
        if body:
            self.send_data(sid, body, end=end)
        self.flush()
        return sid

    def send_data(self, sid: int, data: bytes, *, end: bool = False) -> None:
        """Send ``data`` in frames the peer accepts (the caller keeps within the window)."""
        size = self.conn.max_outbound_frame_size
        view = memoryview(data)
        for offset in range(0, max(len(view), 1), size):
            chunk = view[offset : offset + size]
            self.conn.send_data(sid, bytes(chunk), end_stream=end and offset + size >= len(view))
        self.flush()

    def window(self, sid: int) -> int:
        return int(self.conn.local_flow_control_window(sid))

    async def read_once(self) -> None:
        try:
            data = await self.reader.read(65536)
        except ConnectionError:
            data = b""
        if not data:
            self.closed = True
            return
        for event in self.conn.receive_data(data):
            self.record(event)
            if isinstance(event, h2.events.DataReceived):
                sid = event.stream_id
                self.received[sid] = self.received.get(sid, 0) + len(event.data)
                length = event.flow_controlled_length
                if length:
                    self.conn.increment_flow_control_window(length)  # the connection window, always
                    if sid not in self.uncredited and not event.stream_ended:
                        with contextlib.suppress(h2.exceptions.StreamClosedError):
                            self.conn.increment_flow_control_window(length, stream_id=sid)
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.goaways.append(event)
        self.flush()

    def abort(self) -> None:
        """Drop the TCP connection at once (no GOAWAY, no RST_STREAM)."""
        self.writer.transport.abort()
        self.closed = True
