"""Run an example's server and client end to end (what each ``run.py`` does).

An example folder with ``server.py`` and ``client.py`` (both taking
``--host`` and ``--port``) gets a one-command demo: pick a free port, start
``server.py`` in a subprocess, wait until it accepts connections, run
``client.py`` against it, print what the client printed, then terminate the
server (SIGTERM: a graceful exit). Shared here so the examples' ``run.py``
scripts stay a few lines and cannot drift apart. Works from a checkout: the
repository root is put on the subprocesses' PYTHONPATH.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_connectable(port: int, server: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"server exited early with code {server.returncode}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"server did not listen on {HOST}:{port} within {timeout}s") from None
            time.sleep(0.05)


def stop(server: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def run_example(folder: Path) -> int:
    """Serve ``folder/server.py``, run ``folder/client.py`` against it; 0 if the client succeeded."""
    port = free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    server = subprocess.Popen(
        [sys.executable, "server.py", "--host", HOST, "--port", str(port)], cwd=folder, env=env
    )
    try:
        wait_connectable(port, server)
        client = subprocess.run(
            [sys.executable, "client.py", "--host", HOST, "--port", str(port)],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        sys.stdout.write(client.stdout)
        sys.stderr.write(client.stderr)
        if client.returncode != 0:
            print(f"client failed with code {client.returncode}", file=sys.stderr)
            return 1
    finally:
        stop(server)
    return 0
