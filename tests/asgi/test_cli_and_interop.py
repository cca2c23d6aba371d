"""``grpcasgi.interop.server:app`` under Hypercorn and under ``grpcasgi run``,
and the CLI's process behaviour (workers, TLS, SIGTERM → exit 0)."""

from __future__ import annotations

import pathlib
import signal
import ssl
import subprocess
import sys

from asgi_procs import grpcasgi_run, hypercorn
from asgi_testapp import SERVICE, S
from grpcasgi import Cardinality
from grpcasgi.client import Channel
from grpcasgi.interop.client import CASES, run_cases

AUTH = {"authorization": "Bearer good"}


async def unary(ch: Channel, value: str) -> str:
    async with ch.request(f"/{SERVICE}/Unary", Cardinality.UNARY_UNARY, S, S, metadata=AUTH) as stream:
        await stream.send_message(S(value=value), end=True)
        reply = await stream.recv_message()
        await stream.recv_trailing_metadata()
        return str(reply.value)


async def test_interop_cases_pass_under_hypercorn() -> None:
    server = hypercorn("grpcasgi.interop.server:app", "--bind", "127.0.0.1:0")
    try:
        async with Channel("127.0.0.1", server.ports["http"]) as channel:
            failures = await run_cases(channel, list(CASES), out=_Discard())
    finally:
        code = server.stop()
    assert failures == []
    assert code == 0 and "Traceback" not in server.log, server.log


async def test_grpcasgi_run_serves_the_interop_app_and_exits_0_on_sigterm() -> None:
    server = grpcasgi_run("grpcasgi.interop.server:app", "--port", "0")
    try:
        async with Channel("127.0.0.1", server.ports["http"]) as channel:
            failures = await run_cases(channel, ["empty_unary", "ping_pong", "cancel_after_begin"], out=_Discard())
    finally:
        code = server.stop(signal.SIGTERM)
    assert failures == []
    assert code == 0, server.log
    assert "stopped" in server.log


async def test_grpcasgi_run_workers_share_the_port() -> None:
    server = grpcasgi_run("asgi_testapp:grpc_app", "--port", "0", "--workers", "2")
    try:
        pids = {line.split("[", 1)[1].split("]", 1)[0] for line in server.lines if "grpcasgi: serving on http://" in line}
        assert len(pids) == 2, server.log  # two worker processes bound the one port
        for i in range(4):  # a new connection each time; the kernel picks a worker
            async with Channel("127.0.0.1", server.ports["http"]) as channel:
                assert await unary(channel, f"w{i}") == f"w{i}|alice|bundled"
    finally:
        code = server.stop(signal.SIGTERM)
    assert code == 0, server.log
    assert server.log.count("stopped") == 2, server.log


async def test_grpcasgi_run_with_tls(cert_files: tuple[str, str], client_ssl: ssl.SSLContext) -> None:
    certfile, keyfile = cert_files
    server = grpcasgi_run("asgi_testapp:grpc_app", "--port", "0", "--certfile", certfile, "--keyfile", keyfile)
    try:
        async with Channel("127.0.0.1", server.ports["https"], ssl=client_ssl) as channel:
            assert await unary(channel, "tls") == "tls|alice|bundled"
    finally:
        code = server.stop(signal.SIGTERM)
    assert code == 0, server.log


def test_grpcasgi_run_reports_a_bad_target() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "grpcasgi.cli", "run", "no_such_module_xyz:app", "--port", "0"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "cannot import 'no_such_module_xyz'" in result.stderr


class _Discard:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass



async def test_grpcasgi_run_on_a_unix_socket(tmp_path: pathlib.Path) -> None:
    import re

    from asgi_procs import ServerProcess

    path = tmp_path / "grpc.sock"
    server = ServerProcess(
        [sys.executable, "-m", "grpcasgi.cli", "run", "asgi_testapp:grpc_app", "--uds", str(path)],
        address=re.compile(r"serving on (http)://unix:\S+ \(pid (\d+)"),
    ).wait_ready()
    try:
        async with Channel(path=str(path)) as channel:
            assert await unary(channel, "uds") == "uds|alice|bundled"
    finally:
        code = server.stop(signal.SIGTERM)
    assert code == 0, server.log


async def test_grpcasgi_run_serves_the_grpc_part_of_a_mixed_app() -> None:
    server = grpcasgi_run("asgi_testapp:app", "--port", "0")
    try:
        async with Channel("127.0.0.1", server.ports["http"]) as channel:
            assert await unary(channel, "mixed") == "mixed|alice|bundled"
    finally:
        code = server.stop(signal.SIGTERM)
    assert code == 0, server.log
    assert "serving only the gRPC part" in server.log
