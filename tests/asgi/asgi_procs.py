"""Server subprocesses for the ASGI tests: Hypercorn and ``grpcasgi run``.

Each server binds port 0 and the test reads the real port from the server's
own log line ("Running on http://127.0.0.1:PORT" for Hypercorn, "serving on
http://127.0.0.1:PORT" for grpcasgi), so there is no port race. A thread
keeps draining the log (a full pipe would block the server) and keeps it for
failure messages and for checking that the server logged no traceback.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Sequence

HERE = Path(__file__).parent
_ADDRESS = re.compile(r"(?:Running on|serving on) (https?)://127\.0\.0\.1:(\d+)")


class ServerProcess:
    def __init__(
        self, argv: Sequence[str], *, expect: int = 1, cwd: Path = HERE, address: re.Pattern[str] = _ADDRESS
    ) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.argv = list(argv)
        self.proc = subprocess.Popen(
            self.argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        #: scheme -> port, from the server's log.
        self.ports: dict[str, int] = {}
        self._expect = expect
        self._address = address
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            match = self._address.search(line)
            if match and match.group(1) not in self.ports:
                self.ports[match.group(1)] = int(match.group(2))
                if len(self.ports) >= self._expect:
                    self._ready.set()
        self._ready.set()

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_ready(self, timeout: float = 30) -> "ServerProcess":
        self._ready.wait(timeout)
        if len(self.ports) < self._expect:
            self.stop()
            raise RuntimeError(f"{self.argv} did not start; its log:\n{self.log}")
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        """Signal the server and wait for it; kill it if it does not exit in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._thread.join(5)
        return self.proc.returncode


def hypercorn(app: str, *args: str, expect: int = 1) -> ServerProcess:
    """``python -m hypercorn`` with the gRPC settings of ``grpcasgi.contrib.hypercorn_config``."""
    argv = [
        sys.executable, "-m", "hypercorn",
        "--config", "python:grpcasgi.contrib.hypercorn_config",
        "--graceful-timeout", "2",
        *args, app,
    ]
    return ServerProcess(argv, expect=expect).wait_ready()


_WORKERS_READY = re.compile(r"workers serving on (https?)://127\.0\.0\.1:(\d+)")


def grpcasgi_run(target: str, *args: str) -> ServerProcess:
    """The ``grpcasgi`` console script (``grpcasgi run target ...``); with
    ``--workers`` ready once the supervisor reports every worker serving."""
    script = Path(sys.executable).parent / "grpcasgi"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "grpcasgi.cli"]
    address = _WORKERS_READY if "--workers" in args else _ADDRESS
    return ServerProcess([*command, "run", target, *args], address=address).wait_ready()
