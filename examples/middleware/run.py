"""Run the middleware example end to end: start the server, call it, stop it.

    python examples/middleware/run.py

Picks a free port, starts ``server.py --port N`` in a subprocess, waits until
it accepts connections, runs ``client.py --port N``, prints what the client
printed, then terminates the server (SIGTERM: a graceful exit).  Exits 0 on
success.  Works from a checkout: the repository root is put on PYTHONPATH.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
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


def main() -> int:
    port = free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    server = subprocess.Popen(
        [sys.executable, "server.py", "--host", HOST, "--port", str(port)], cwd=HERE, env=env
    )
    try:
        wait_connectable(port, server)
        client = subprocess.run(
            [sys.executable, "client.py", "--host", HOST, "--port", str(port)],
            cwd=HERE,
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


if __name__ == "__main__":
    sys.exit(main())
