"""Support for the interop tests: grpcio stubs for our protos, TLS material and
the interop command lines run as subprocesses.

grpcio's ``_pb2_grpc`` module for ``grpc.testing`` is generated once per test
session with ``grpc_tools.protoc`` from the package's own ``test.proto``; it
imports our committed ``_pb2`` modules, so grpcio and grpcasgi share one set
of message classes and the descriptor pool sees each proto file once.
(Helper modules carry an ``interop_`` prefix: pytest puts every test
directory on ``sys.path``, so a generic name could shadow another directory's.)
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import IO, Iterator

ROOT = Path(__file__).resolve().parents[2]
TEST_PROTO = "grpcasgi/interop/protos/grpc/testing/test.proto"


@functools.lru_cache(maxsize=None)
def grpcio_test_pb2_grpc() -> ModuleType:
    """grpcio's generated ``test_pb2_grpc`` for our ``grpc.testing`` protos."""
    from grpc_tools import protoc  # test-only dependency

    import grpc_tools

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory(prefix="grpcasgi-interop-stubs-") as out:
        rc = protoc.main(["grpc_tools.protoc", f"-I{ROOT}", f"-I{well_known}", f"--grpc_python_out={out}", str(ROOT / TEST_PROTO)])
        if rc != 0:
            raise RuntimeError(f"grpc_tools.protoc failed ({rc}) generating grpcio stubs for {TEST_PROTO}")
        path = Path(out, TEST_PROTO).with_name("test_pb2_grpc.py")
        spec = importlib.util.spec_from_file_location("grpcio_interop_test_pb2_grpc", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class TLSFiles:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes
    ca_file: str
    cert_file: str
    key_file: str


def make_tls_files(directory: Path) -> TLSFiles:
    """A throwaway CA and a server certificate for ``localhost`` and 127.0.0.1."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    ca_file = directory / "ca.pem"
    cert_file = directory / "server.pem"
    key_file = directory / "server.key"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.private_key_pem.write_to_path(str(key_file))
    cert_chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
    cert_file.write_bytes(cert_chain)
    return TLSFiles(
        ca_pem=ca.cert_pem.bytes(),
        cert_pem=cert_chain,
        key_pem=cert.private_key_pem.bytes(),
        ca_file=str(ca_file),
        cert_file=str(cert_file),
        key_file=str(key_file),
    )


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


_LISTENING = re.compile(r"listening on (\S+):(\d+)")


class ServerProcess:
    """``python -m grpcasgi.interop.server`` in a subprocess, stopped with SIGTERM."""

    def __init__(self, *args: str, startup_timeout: float = 20.0) -> None:
        self.args = [sys.executable, "-m", "grpcasgi.interop.server", "--host", "127.0.0.1", "--port", "0", *args]
        self.proc = subprocess.Popen(
            self.args, cwd=ROOT, env=_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.stderr_lines: list[str] = []
        self._port_found = threading.Event()
        self.port = 0
        assert self.proc.stderr is not None
        self._reader = threading.Thread(target=self._read, args=(self.proc.stderr,), daemon=True)
        self._reader.start()
        if not self._port_found.wait(startup_timeout):
            self.stop()
            raise RuntimeError(f"interop server did not start: {self.args}\n{self.stderr}")

    def _read(self, stream: IO[str]) -> None:
        # Drains stderr for the life of the process so the server never blocks on a full pipe.
        for line in stream:
            self.stderr_lines.append(line)
            match = _LISTENING.search(line)
            if match and not self.port:
                self.port = int(match.group(2))
                self._port_found.set()
        self._port_found.set()  # EOF: the process is gone; wake the waiter

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait; returns the exit status (the process is killed if it hangs)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return self.proc.returncode


@contextlib.contextmanager
def server_process(*args: str) -> Iterator[ServerProcess]:
    proc = ServerProcess(*args)
    try:
        yield proc
    finally:
        proc.stop()


def run_client(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """``python -m grpcasgi.interop.client ARGS``; returns the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "grpcasgi.interop.client", *args],
        cwd=ROOT,
        env=_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
