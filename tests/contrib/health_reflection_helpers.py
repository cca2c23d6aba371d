"""Shared by test_health.py and test_reflection.py: a server on loopback and the
grpcio judge subprocess (``grpcio_judge.py``) talking to it.

The judge runs grpcio's clients in another process (their ``_pb2`` modules
clash with ours in protobuf's default pool); the test's event loop keeps
serving while it awaits the judge's answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from typing import Any, AsyncIterator

import pytest

from common_support import no_task_leaks
from grpcasgi.client import Channel
from grpcasgi.server import Server

JUDGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "grpcio_judge.py")
JUDGE_TIMEOUT = 30.0  # safety net only; answers normally take milliseconds


class JudgeProcess:
    """One ``grpcio_judge.py`` process; ``await judge("check", service="")``."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def __call__(self, op: str, **args: Any) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps({"op": op, **args}) + "\n").encode())
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), JUDGE_TIMEOUT)
        assert line, f"the grpcio judge exited (rc={self.proc.returncode})"
        result = json.loads(line)
        assert "error" not in result, f"grpcio judge failed on {op}: {result['error']}"
        return result


@contextlib.asynccontextmanager
async def grpcio_judge(port: int) -> AsyncIterator[JudgeProcess]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        JUDGE,
        str(port),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        ready = await asyncio.wait_for(proc.stdout.readline(), JUDGE_TIMEOUT)
        assert json.loads(ready) == {"ready": True}
        yield JudgeProcess(proc)
    finally:
        if proc.returncode is None:
            assert proc.stdin is not None
            proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()


@contextlib.asynccontextmanager
async def serving(services: list[Any], **server_kwargs: Any) -> AsyncIterator[Server]:
    """A started server on 127.0.0.1 (any port), closed on exit."""
    server = Server(services, **server_kwargs)
    await server.start("127.0.0.1", 0)
    try:
        yield server
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), 10)


@contextlib.asynccontextmanager
async def channel_to(server: Server) -> AsyncIterator[Channel]:
    channel = Channel("127.0.0.1", server.port)
    try:
        yield channel
    finally:
        channel.close()


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves tasks running (pollers, probes, watches) after its servers closed.

    Test modules import this fixture to use it; a few loop turns let
    finished calls settle first.
    """
    async with no_task_leaks(settle_turns=100):
        yield


EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "examples")


@contextlib.asynccontextmanager
async def example_server(script: str, *args: str) -> AsyncIterator[tuple[int, list[str]]]:
    """Run ``examples/<script> --port 0 *args``; yield its port and (after exit) its output lines.

    The server is stopped with SIGTERM (a graceful exit) and must exit 0.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-u",
        os.path.join(EXAMPLES, script),
        "--port",
        "0",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output: list[str] = []
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), JUDGE_TIMEOUT)).decode()
        assert line.startswith("Serving on "), line
        yield int(line.rsplit(":", 1)[1]), output
    finally:
        if proc.returncode is None:
            proc.terminate()
        try:
            rest, _ = await asyncio.wait_for(proc.communicate(), 10)
        except asyncio.TimeoutError:
            proc.kill()
            rest, _ = await proc.communicate()
        output.extend(rest.decode().splitlines())
    assert proc.returncode == 0, "\n".join(output)


async def run_example_client(script: str, *args: str) -> list[str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        os.path.join(EXAMPLES, script),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), JUDGE_TIMEOUT)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.communicate()
        raise
    assert proc.returncode == 0, err.decode()
    return out.decode().splitlines()
