"""The grpc_server / grpc_channel fixtures, and the plugin without pytest-asyncio.

Each case runs pytest on a small generated test file in a subprocess, so the
fixtures' teardown is observed from outside the test that used them.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from google.protobuf.wrappers_pb2 import StringValue

from grpcasgi import Cardinality, Handler
from grpcasgi.client import UnaryUnaryMethod
from grpcasgi.server import Server, Stream

SERVICE = '''
from google.protobuf.wrappers_pb2 import StringValue
from grpcasgi import Cardinality, Handler

class Echo:
    async def Echo(self, stream):
        request = await stream.recv_message()
        await stream.send_message(request)

    def __mapping__(self):
        return {"/t.Echo/Echo": Handler(self.Echo, Cardinality.UNARY_UNARY, StringValue, StringValue)}
'''


def run_pytest(tmp_path: Path, test_source: str, *args: str, env_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_generated.py").write_text(SERVICE + textwrap.dedent(test_source))
    env = None
    if env_path is not None:
        import os

        env = {**os.environ, "PYTHONPATH": str(env_path)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "test_generated.py", "-q", "-p", "no:cacheprovider", "-o", "asyncio_mode=auto", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_fixtures_start_servers_and_close_everything(tmp_path: Path) -> None:
    result = run_pytest(
        tmp_path,
        '''
        import asyncio, socket
        from grpcasgi.client import UnaryUnaryMethod
        from grpcasgi.server import Server

        seen = {}

        async def test_use(grpc_server, grpc_channel):
            one = await grpc_server([Echo()])
            two = await grpc_server([Echo()], port=0)
            assert isinstance(one, Server) and one.port and two.port and one.port != two.port
            for server in (one, two):
                channel = grpc_channel(server)
                echo = UnaryUnaryMethod(channel, "/t.Echo/Echo", StringValue, StringValue)
                assert (await echo(StringValue(value="hi"), timeout=5)).value == "hi"
            by_address = grpc_channel("127.0.0.1", one.port)
            echo = UnaryUnaryMethod(by_address, "/t.Echo/Echo", StringValue, StringValue)
            assert (await echo(StringValue(value="again"), timeout=5)).value == "again"
            seen["ports"] = (one.port, two.port)
            seen["channel"] = by_address

        def test_torn_down():
            # The servers stopped listening and the channels were closed.
            for port in seen["ports"]:
                with socket.socket() as sock:
                    assert sock.connect_ex(("127.0.0.1", port)) != 0
            assert seen["channel"]._closed
        ''',
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_fixtures_work_in_strict_mode(tmp_path: Path) -> None:
    result = run_pytest(
        tmp_path,
        '''
        import pytest
        from grpcasgi.client import UnaryUnaryMethod

        @pytest.mark.asyncio
        async def test_use(grpc_server, grpc_channel):
            channel = grpc_channel(await grpc_server([Echo()]))
            echo = UnaryUnaryMethod(channel, "/t.Echo/Echo", StringValue, StringValue)
            assert (await echo(StringValue(value="strict"), timeout=5)).value == "strict"
        ''',
        "-o",
        "asyncio_mode=strict",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_plugin_is_harmless_without_pytest_asyncio(tmp_path: Path) -> None:
    # Hide pytest-asyncio: its pytest plugin is disabled (-p no:asyncio) and
    # importing it fails, as when it is not installed.
    blocker = tmp_path / "blocker"
    (blocker / "pytest_asyncio").mkdir(parents=True)
    (blocker / "pytest_asyncio" / "__init__.py").write_text("raise ImportError('pytest-asyncio is not installed')\n")
    result = run_pytest(
        tmp_path,
        '''
        def test_unrelated():
            assert True

        def test_uses_fixture(grpc_server):
            pass
        ''',
        "-p",
        "no:asyncio",
        env_path=blocker,
    )
    assert "1 passed" in result.stdout, result.stdout + result.stderr
    assert "1 error" in result.stdout
    assert "the grpcasgi fixtures need pytest-asyncio" in result.stdout
