"""The standard gRPC interop cases, in every direction between grpcasgi and grpcio.

* grpcasgi client -> grpcasgi server, in process;
* grpcasgi client -> grpcio (``grpc.aio``) server;
* grpcio client -> grpcasgi server;
* grpcio client -> grpcio server, the control: it shows the grpcio-side test
  code itself follows the spec, so a failure elsewhere is grpcasgi's;
* the real command lines, ``python -m grpcasgi.interop.server`` and
  ``python -m grpcasgi.interop.client --test_case all``, plaintext and TLS;
* TLS (a trustme CA) with large_unary in each grpcasgi<->grpcio direction.

Every server listens on 127.0.0.1 port 0; test ids name the case.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import subprocess
import sys
from typing import AsyncIterator, Iterator

import grpc
import pytest
from grpc import aio

from grpcasgi.client import Channel
from grpcasgi.interop.client import CASES, run_cases
from grpcasgi.interop.protos.grpc.testing import test_grpc
from grpcasgi.interop.server import make_services
from grpcasgi.server import Server
from interop_grpcio_client import GRPCIO_CASES, GRPCIO_CLIENT_UNSUPPORTED, GRPCIO_SERVER_UNSUPPORTED
from interop_grpcio_server import start_grpcio_server
from interop_support import ROOT, ServerProcess, TLSFiles, make_tls_files, run_client, server_process

CASE_NAMES = list(CASES)


def test_both_clients_implement_the_same_cases() -> None:
    assert sorted([*GRPCIO_CASES, *GRPCIO_CLIENT_UNSUPPORTED]) == sorted(CASE_NAMES)


def _skip_unsupported(case: str, *, client: str, server: str) -> None:
    """Skip, with the reason, a case one of grpcio's sides cannot express."""
    reason = (GRPCIO_CLIENT_UNSUPPORTED.get(case) if client == "grpcio" else None) or (
        GRPCIO_SERVER_UNSUPPORTED.get(case) if server == "grpcio" else None
    )
    if reason:
        pytest.skip(f"{case}: {reason}")


GRPCIO_SERVER_CASES = [c for c in CASE_NAMES if c not in GRPCIO_SERVER_UNSUPPORTED]
GRPCIO_CLIENT_CASES = [c for c in CASE_NAMES if c not in GRPCIO_CLIENT_UNSUPPORTED]


# -- fixtures ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def grpcasgi_server(tls: TLSFiles | None = None) -> AsyncIterator[Server]:
    server = Server(make_services())
    ctx = None
    if tls is not None:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    await server.start("127.0.0.1", 0, ssl=ctx)
    try:
        yield server
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), 10)


@contextlib.asynccontextmanager
async def grpcio_server(tls: TLSFiles | None = None) -> AsyncIterator[int]:
    creds = grpc.ssl_server_credentials([(tls.key_pem, tls.cert_pem)]) if tls is not None else None
    server, port = await start_grpcio_server(creds)
    try:
        yield port
    finally:
        await server.stop(None)


@contextlib.asynccontextmanager
async def grpcio_channel(port: int, tls: TLSFiles | None = None) -> AsyncIterator[aio.Channel]:
    target = f"127.0.0.1:{port}"
    if tls is None:
        channel = aio.insecure_channel(target)
    else:
        creds = grpc.ssl_channel_credentials(root_certificates=tls.ca_pem)
        channel = aio.secure_channel(target, creds, options=[("grpc.ssl_target_name_override", "localhost")])
    try:
        yield channel
    finally:
        await channel.close()


def grpcasgi_channel(port: int, tls: TLSFiles | None = None) -> Channel:
    ctx = ssl.create_default_context(cafile=tls.ca_file) if tls is not None else None
    return Channel("127.0.0.1", port, ssl=ctx, server_hostname="localhost" if tls is not None else None)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls_files(tmp_path_factory.mktemp("interop-tls"))


@pytest.fixture(scope="module")
def cli_server() -> Iterator[ServerProcess]:
    """``python -m grpcasgi.interop.server`` shared by the command-line tests."""
    with server_process() as proc:
        yield proc


@pytest.fixture
def no_server_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """grpcasgi must log no error (an application error, a crashed call) during a case."""
    caplog.set_level(logging.WARNING, logger="grpcasgi")
    yield
    errors = [r for r in caplog.records if r.name.startswith("grpcasgi") and r.levelno >= logging.ERROR]
    assert not errors, "\n".join(r.getMessage() for r in errors)


def _other_tasks() -> set[asyncio.Task[object]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()}


# -- in-process directions ---------------------------------------------------------------


@pytest.mark.parametrize("case", CASE_NAMES)
async def test_grpcasgi_client_to_grpcasgi_server(case: str, no_server_errors: None) -> None:
    before = _other_tasks()
    async with grpcasgi_server() as server:
        async with grpcasgi_channel(server.port or 0) as channel:
            await CASES[case](test_grpc.TestServiceStub(channel))
    leaked = _other_tasks() - before
    assert not leaked, f"tasks left running after {case}: {leaked}"


@pytest.mark.parametrize("case", CASE_NAMES)
async def test_grpcasgi_client_to_grpcio_server(case: str) -> None:
    _skip_unsupported(case, client="grpcasgi", server="grpcio")
    async with grpcio_server() as port:
        async with grpcasgi_channel(port) as channel:
            await CASES[case](test_grpc.TestServiceStub(channel))


@pytest.mark.parametrize("case", CASE_NAMES)
async def test_grpcio_client_to_grpcasgi_server(case: str, no_server_errors: None) -> None:
    _skip_unsupported(case, client="grpcio", server="grpcasgi")
    async with grpcasgi_server() as server:
        async with grpcio_channel(server.port or 0) as channel:
            await GRPCIO_CASES[case](channel)


@pytest.mark.parametrize("case", CASE_NAMES)
async def test_grpcio_client_to_grpcio_server_control(case: str) -> None:
    _skip_unsupported(case, client="grpcio", server="grpcio")
    async with grpcio_server() as port:
        async with grpcio_channel(port) as channel:
            await GRPCIO_CASES[case](channel)


# -- TLS ---------------------------------------------------------------------------------------


async def test_tls_grpcasgi_client_to_grpcio_server_large_unary(tls: TLSFiles) -> None:
    async with grpcio_server(tls) as port:
        async with grpcasgi_channel(port, tls) as channel:
            await CASES["large_unary"](test_grpc.TestServiceStub(channel))


async def test_tls_channel_to_grpcio_server_closes_promptly(tls: TLSFiles) -> None:
    # grpcio never answers our TLS close_notify; the channel must not wait for it
    # (it waited for asyncio's 30 s ssl_shutdown_timeout, bounded to 5 s by Channel).
    async with grpcio_server(tls) as port:
        channel = grpcasgi_channel(port, tls)
        await CASES["empty_unary"](test_grpc.TestServiceStub(channel))
        started = asyncio.get_running_loop().time()
        await channel.__aexit__(None, None, None)
        assert asyncio.get_running_loop().time() - started < 2.0


async def test_tls_grpcio_client_to_grpcasgi_server_large_unary(tls: TLSFiles, no_server_errors: None) -> None:
    async with grpcasgi_server(tls) as server:
        async with grpcio_channel(server.port or 0, tls) as channel:
            await GRPCIO_CASES["large_unary"](channel)


# -- the command lines -------------------------------------------------------------------------------


def _assert_all_passed(result: subprocess.CompletedProcess[str], cases: list[str] = CASE_NAMES) -> None:
    assert result.returncode == 0, f"client exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    for case in cases:
        assert f"{case}: passed" in result.stdout, result.stdout


def test_cli_client_to_cli_server_all_cases(cli_server: ServerProcess) -> None:
    result = run_client("--server_host", "127.0.0.1", "--server_port", str(cli_server.port), "--test_case", "all")
    _assert_all_passed(result)


async def test_grpcio_client_to_cli_server_all_cases(cli_server: ServerProcess) -> None:
    async with grpcio_channel(cli_server.port) as channel:
        for case in GRPCIO_CLIENT_CASES:
            try:
                await GRPCIO_CASES[case](channel)
            except AssertionError as exc:
                raise AssertionError(f"grpcio -> CLI server, {case}: {exc}") from exc


async def test_cli_client_to_grpcio_server_all_cases() -> None:
    async with grpcio_server() as port:
        result = await asyncio.to_thread(
            run_client, "--server_host", "127.0.0.1", "--server_port", str(port), "--test_case", ",".join(GRPCIO_SERVER_CASES)
        )
    _assert_all_passed(result, GRPCIO_SERVER_CASES)


def test_cli_tls_all_cases(tls: TLSFiles) -> None:
    with server_process("--use_tls", "--tls_cert_file", tls.cert_file, "--tls_key_file", tls.key_file) as proc:
        assert "(TLS)" in proc.stderr
        result = run_client(
            "--server_host", "127.0.0.1",
            "--server_port", str(proc.port),
            "--use_tls",
            "--ca_file", tls.ca_file,
            "--server_host_override", "localhost",
            "--test_case", "all",
        )  # fmt: skip
        _assert_all_passed(result)


def test_cli_server_exits_cleanly_on_sigterm() -> None:
    proc = ServerProcess()
    assert proc.stop() == 0
    assert "stopped" in proc.stderr
    assert "Traceback" not in proc.stderr


async def test_cli_client_reports_a_failing_case() -> None:
    # A server without the interop service: every call is UNIMPLEMENTED.
    server = Server([])
    await server.start("127.0.0.1", 0)
    try:
        result = await asyncio.to_thread(
            run_client, "--server_host", "127.0.0.1", "--server_port", str(server.port), "--test_case", "empty_unary,unimplemented_method"
        )
    finally:
        server.close()
        await server.wait_closed()
    assert result.returncode == 1, result
    assert "empty_unary: FAILED" in result.stdout
    assert "unimplemented_method: passed" in result.stdout
    assert "interop case empty_unary failed" in result.stderr and "UNIMPLEMENTED" in result.stderr


async def test_run_cases_reports_failures_without_raising() -> None:
    server = Server([])
    await server.start("127.0.0.1", 0)
    try:
        async with Channel("127.0.0.1", server.port) as channel:
            lines: list[str] = []

            class Out:
                def write(self, text: str) -> None:
                    lines.append(text)

                def flush(self) -> None:
                    pass

            failures = await run_cases(channel, ["large_unary", "unimplemented_service"], out=Out())
    finally:
        server.close()
        await server.wait_closed()
    assert [name for name, _ in failures] == ["large_unary"]
    assert "UNIMPLEMENTED" in failures[0][1]


@pytest.mark.parametrize(
    "module, args, message",
    [
        ("grpcasgi.interop.client", ["--server_port", "1", "--test_case", "no_such_case"], "unknown test case no_such_case"),
        ("grpcasgi.interop.server", ["--port", "0", "--use_tls"], "--use_tls needs --tls_cert_file"),
    ],
    ids=["client-unknown-case", "server-tls-without-cert"],
)
def test_cli_bad_arguments(module: str, args: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 2
    assert message in result.stderr
