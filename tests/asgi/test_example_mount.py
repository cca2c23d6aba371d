"""examples/mount_with_starlette: the README's Hypercorn command and client.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from asgi_procs import ServerProcess

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mount_with_starlette"


def test_readme_command_and_client() -> None:
    server = ServerProcess(
        [
            sys.executable, "-m", "hypercorn",
            "--config", "python:grpcasgi.contrib.hypercorn_config",
            "--bind", "127.0.0.1:0",
            "app:app",
        ],
        cwd=EXAMPLE,
    ).wait_ready()
    try:
        result = subprocess.run(
            [sys.executable, "client.py", "--port", str(server.ports["http"])],
            cwd=EXAMPLE, capture_output=True, text=True, timeout=60,
        )
    finally:
        code = server.stop()
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Hello, gRPC!",
        "Hello, stream!",
        "Bonjour, stream!",
        "Hola, stream!",
        "Hello from Starlette over HTTP/1.1",
        'stats: {"greetings": 4, "started": true}',
    ]
    assert code == 0 and "Traceback" not in server.log, server.log
