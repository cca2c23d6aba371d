"""``grpcasgi.utils.graceful_exit``: signals close servers (subprocess for real
SIGTERM/SIGINT handling; in-process with SIGUSR1 for the before-start case)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from core_helpers import SV, echo_service
from grpcasgi.client import UnaryUnaryMethod
from grpcasgi.exceptions import GRPCError
from grpcasgi.protocol.status import Status
from grpcasgi.server import Server
from grpcasgi.utils import graceful_exit

SCRIPT = Path(__file__).parent / "scripts" / "graceful_server.py"


class Child:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    async def expect(self, prefix: str, timeout: float = 10) -> str:
        assert self.proc.stdout is not None
        while True:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
            if not raw:
                raise AssertionError(f"child exited before printing {prefix!r}; got {self.lines}")
            line = raw.decode().strip()
            self.lines.append(line)
            if line.startswith(prefix):
                return line

    async def finish(self, timeout: float = 10) -> tuple[int, str]:
        assert self.proc.stdout is not None and self.proc.stderr is not None
        out, err = await asyncio.wait_for(self.proc.communicate(), timeout)
        self.lines.extend(out.decode().split())
        return int(self.proc.returncode or 0), err.decode()


@pytest.fixture
async def child() -> AsyncIterator[Any]:
    procs: list[Child] = []

    async def spawn(*args: str) -> Child:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(SCRIPT), *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        procs.append(Child(proc))
        return procs[-1]

    yield spawn
    for c in procs:
        if c.proc.returncode is None:
            c.proc.kill()
            await c.proc.wait()


async def test_sigterm_closes_cancels_and_exits_zero(child: Any, make_channel: Any) -> None:
    c = await child()
    port = int((await c.expect("port")).split()[1])
    call = asyncio.ensure_future(
        UnaryUnaryMethod(make_channel(port), "/core.Block/M", SV, SV)(SV(value="x"))
    )
    await c.expect("started")
    c.proc.send_signal(signal.SIGTERM)
    with pytest.raises(GRPCError) as info:
        await asyncio.wait_for(call, 10)
    assert info.value.status is Status.UNAVAILABLE
    code, err = await c.finish()
    assert code == 0, err
    assert "Traceback" not in err
    assert c.lines[-3:] == ["closing", "cleanup", "exited"]


async def test_sigterm_when_idle(child: Any) -> None:
    c = await child()
    await c.expect("port")
    c.proc.send_signal(signal.SIGTERM)
    code, err = await c.finish()
    assert (code, err) == (0, "")
    assert c.lines[-2:] == ["closing", "exited"]


async def test_second_sigint_exits_at_once(child: Any, make_channel: Any) -> None:
    """With a long shutdown grace, the first SIGINT starts closing; the second raises SystemExit."""
    c = await child("60")
    port = int((await c.expect("port")).split()[1])
    call = asyncio.ensure_future(
        UnaryUnaryMethod(make_channel(port), "/core.Block/M", SV, SV)(SV(value="x"))
    )
    await c.expect("started")
    c.proc.send_signal(signal.SIGINT)
    await c.expect("closing")
    c.proc.send_signal(signal.SIGINT)
    code, err = await c.finish()
    assert code == 128 + signal.SIGINT, err
    assert "exited" not in c.lines
    with pytest.raises(GRPCError) as info:
        await asyncio.wait_for(call, 10)
    # asyncio.run cancels the handler's task on the way out (RST_STREAM CANCEL),
    # or the connection drops first.
    assert info.value.status in (Status.CANCELLED, Status.UNAVAILABLE)


class _Probe:
    """Something graceful_exit can close, which tells the test it happened."""

    def __init__(self) -> None:
        self.closed = asyncio.Event()

    def close(self) -> None:
        self.closed.set()


async def test_signal_before_start_prevents_start() -> None:
    server = Server([echo_service()])
    probe = _Probe()
    with graceful_exit([server, probe], signals=(signal.SIGUSR1,)):
        os.kill(os.getpid(), signal.SIGUSR1)
        await asyncio.wait_for(probe.closed.wait(), 5)
        await server.start("127.0.0.1", 0)
        assert server.port is None
        await server.wait_closed()
    # The handler is removed on exit: the default disposition is back.
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


async def test_signal_closes_a_running_server(make_channel: Any) -> None:
    server = Server([echo_service()])
    probe = _Probe()
    with graceful_exit([server, probe], signals=(signal.SIGUSR1,)):
        await server.start("127.0.0.1", 0)
        port = server.port
        reply = await UnaryUnaryMethod(make_channel(port), "/core.Echo/Unary", SV, SV)(SV(value="x"))
        assert reply.value == "x"
        os.kill(os.getpid(), signal.SIGUSR1)
        await asyncio.wait_for(probe.closed.wait(), 5)
        await asyncio.wait_for(server.wait_closed(), 5)


async def test_failed_install_leaves_no_handler_behind() -> None:
    """A signal that cannot be handled fails graceful_exit without leaving the others installed."""
    with pytest.raises((ValueError, RuntimeError, OSError)):
        with graceful_exit([_Probe()], signals=(signal.SIGUSR1, signal.SIGSTOP)):
            pass  # pragma: no cover - never entered
    # (set order puts SIGUSR1 before SIGSTOP: it was installed, then left behind)
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
