"""A client's GOAWAY while its calls are still running.

``h2`` closes the connection's state machine on a received GOAWAY and refuses
to send anything after it, so running calls can no longer answer. They must
be cancelled like calls of a lost connection — not fail inside ``send`` with
h2's ProtocolError, logged as an application error with a traceback per call
(which is what a load generator ending its run used to produce).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from core_helpers import UU, RawH2, Service, SV, frame, grpc_request_headers


async def test_client_goaway_cancels_running_calls(start_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def slow(stream: Any) -> None:
        await stream.recv_message()
        started.set()
        try:
            await release.wait()
            await stream.send_message(SV(value="late"))
            outcome.set_result("sent")
        except asyncio.CancelledError:
            outcome.set_result("cancelled")
            raise

    server = await start_server([Service("core.Slow", Slow=(slow, UU))])
    raw = await RawH2.connect(server.port)
    try:
        raw.request(grpc_request_headers("/core.Slow/Slow"), frame(SV(value="x").SerializeToString()))
        await asyncio.wait_for(started.wait(), 5)
        caplog.set_level(logging.DEBUG, logger="grpcasgi")
        raw.conn.close_connection()
        raw.flush()
        assert await asyncio.wait_for(outcome, 5) == "cancelled"
        # The server closes the connection once the cancelled call is gone
        # (read raw: the client's own h2 state machine is closed too).
        async def until_eof() -> None:
            while await raw.reader.read(65536):
                pass

        await asyncio.wait_for(until_eof(), 5)
    finally:
        release.set()
        await raw.close()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
