"""``benchmarks/middleware_overhead.py`` keeps running, both modes (tiny counts; no figure is asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from debian_tools import tool

ROOT = Path(__file__).resolve().parents[2]


def test_middleware_overhead_benchmark_runs() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "middleware_overhead.py"), "--count", "10", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "no middleware" in proc.stdout
    assert "ratio (with / without):" in proc.stdout


@pytest.mark.parametrize("only", [None, "logging,deadlines"])
def test_middleware_overhead_h2load_mode_runs(only: str | None) -> None:
    """The saturated-server mode: h2load (installed from Debian's nghttp2-client when missing)."""
    h2load = tool("h2load", "nghttp2-client")
    env = dict(os.environ, PATH=f"{os.path.dirname(h2load)}{os.pathsep}{os.environ.get('PATH', '')}")
    command = [sys.executable, str(ROOT / "benchmarks" / "middleware_overhead.py"), "--h2load", "--seconds", "1", "--rounds", "1"]
    if only:
        command += ["--only-server", only]
    proc = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "no middleware" in proc.stdout
    assert "ratio (server / none):" in proc.stdout
    if only:
        assert "server: logging+deadlines" in proc.stdout
